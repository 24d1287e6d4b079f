// What a caller may be told, and when: pure functions of the transaction as
// readers see it (its last durable-as-promised state). The API maps each kind
// to one status code; the simulator's clients read answers through the same
// functions, so a rule broken here is a rule broken in the simulation too.

import type { Transaction } from './types.js';

/**
 * The answer to a commit call (and to a one-shot begin):
 * - `committed`: every participant acknowledged (200);
 * - `commit-decided`: the commit decision is on disk, some participant has
 *   not acknowledged yet and commitd keeps delivering it (202);
 * - `aborted` (409);
 * - `undecided`: nothing is decided yet, so nothing may be promised (503 with
 *   Retry-After: asking again is safe).
 */
export type CommitAnswer = 'committed' | 'commit-decided' | 'aborted' | 'undecided';

export function commitAnswer(tx: Transaction, refused: boolean): CommitAnswer {
  if (refused || tx.outcome === 'abort') return 'aborted';
  if (tx.outcome === null) return 'undecided';
  return tx.state === 'committed' ? 'committed' : 'commit-decided';
}

/** The answer to an explicit prepare: `prepared` covers a transaction already decided commit. */
export type PrepareAnswer = 'prepared' | 'aborted' | 'undecided';

export function prepareAnswer(tx: Transaction, refused: boolean): PrepareAnswer {
  if (refused || tx.outcome === 'abort') return 'aborted';
  if (tx.outcome === 'commit' || tx.state === 'prepared') return 'prepared';
  return 'undecided';
}

/**
 * A commit call waits for this before answering: aborted, or committed, or
 * decided commit with every participant tried once (the caller then gets 202
 * and commitd keeps trying).
 */
export function commitCallMayAnswer(tx: Transaction): boolean {
  if (tx.outcome === 'abort') return true;
  if (tx.outcome !== 'commit') return false;
  return tx.participants.every((p) => p.acknowledged || p.attempts > 0);
}

/**
 * A call waiting on a transaction that moved to another instance (its shard
 * handed over or taken) may still be answered here from what readers see
 * once it is decided: a commit decision was forced, and an abort is seen
 * before its write only where any recovery, the new owner's included, aborts
 * too (abortIsForced). Undecided, nothing here may be promised: the call
 * goes to the new owner.
 */
export function answerStandsAfterHandover(tx: Transaction): boolean {
  return tx.outcome !== null;
}

/**
 * The longest a call waits for its answer: one round of prepares and one
 * phase-two attempt, each bounded by its timeout from when it was asked for,
 * and a second for the log. Past it the caller hears what readers see, and is
 * promised nothing more than that (commitAnswer).
 */
export function answerWaitMsMax(prepareTimeoutMs: number, phaseTwoTimeoutMs: number): number {
  return prepareTimeoutMs + phaseTwoTimeoutMs + 1000;
}

/** A prepare call waits for every vote (or the abort that ends phase one). */
export function prepareCallMayAnswer(tx: Transaction): boolean {
  return tx.outcome !== null || tx.state === 'prepared';
}

/** An abort call waits for the decision, which may have to wait for a write. */
export function abortCallMayAnswer(tx: Transaction): boolean {
  return tx.outcome !== null;
}

/**
 * Some participant reported that it decided the other way on its own (a
 * heuristic outcome): the transaction's effects are not atomic, whatever its
 * outcome says, and the caller must be told so, not only an operator.
 */
export function mixedOutcome(tx: Transaction): boolean {
  return tx.outcome !== null && tx.participants.some((p) => p.heuristic !== null && p.heuristic !== tx.outcome);
}
