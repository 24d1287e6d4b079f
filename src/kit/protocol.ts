// The participant's side of two-phase commit as pure decisions: given the
// record the kit holds (or none) and the message commitd sent, what to do.
// No I/O here, so every corner is tested directly.

import type { RecordState, TxRecord, Vote } from './store.js';

export type Action = 'prepare' | 'commit' | 'abort';

export type Step =
  /** Answer from the record alone: a repeat, or a message the record settles. */
  | { readonly kind: 'answer'; readonly status: number; readonly body: Record<string, unknown> }
  /** Call the service's callback for this action, then record `next`. */
  | { readonly kind: 'run'; readonly next: RecordState }
  /** Record a tombstone (abort of a transaction never prepared), then answer 200. */
  | { readonly kind: 'tombstone' };

export function voteBody(vote: Vote, reason: string | null): Record<string, unknown> {
  return reason === null ? { vote } : { vote, reason };
}

export function decide(action: Action, record: TxRecord | null): Step {
  switch (action) {
    case 'prepare':
      if (record === null) return { kind: 'run', next: 'prepared' };
      // Every repeat gets the answer given the first time. A prepare after an
      // abort (its tombstone, or a no) votes no: the transaction is over.
      if (record.state === 'aborted')
        return answer(200, voteBody('no', record.reason ?? 'the transaction was aborted'));
      return answer(200, voteBody(record.vote ?? 'yes', record.reason));
    case 'commit':
      if (record === null) {
        // commitd sends commit only after a yes, and a yes is always recorded:
        // no record means this is not our transaction (or its record was
        // lost). Claiming it committed would hide that; commitd keeps retrying
        // and reports it as stuck instead.
        return answer(404, { detail: 'no record of this transaction' });
      }
      switch (record.state) {
        case 'prepared':
          return { kind: 'run', next: 'committed' };
        case 'committed':
        case 'read-only':
          return answer(200, {});
        case 'aborted':
          return answer(409, { heuristic: 'abort' });
      }
      break;
    case 'abort':
      if (record === null) return { kind: 'tombstone' };
      switch (record.state) {
        case 'prepared':
          return { kind: 'run', next: 'aborted' };
        case 'aborted':
        case 'read-only':
          return answer(200, {});
        case 'committed':
          return answer(409, { heuristic: 'commit' });
      }
  }
  throw new Error(`unreachable: ${action} on ${record?.state}`);
}

function answer(status: number, body: Record<string, unknown>): Step {
  return { kind: 'answer', status, body };
}
