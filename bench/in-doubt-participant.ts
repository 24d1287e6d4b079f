// A participant for bench:takeover, in the benchmark's own process so that
// the moment a message arrives and the moment an instance was failed are
// read from one clock. It keeps, per transaction, every outcome message it
// received and when, and it can leave transactions in doubt on purpose:
//
// - a `holder` answers prepare at once, but while its owner is alive (before
//   `failedAt` is set) it holds every commit/abort without answering: phase
//   two has not reached it, like a message lost on the way;
// - a `holder` never answers the prepare of a transaction marked undecided,
//   so its owner stays undecided (the other participant has voted yes);
// - a steady participant answers everything at once.
//
// Once the owner has failed, a delivery is answered, and the first answered
// delivery of each transaction's outcome is when it was resolved here.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Outcome = 'commit' | 'abort';

/**
 * How the bench left a transaction: decided commit with phase two
 * unfinished, or undecided; or `fresh`, begun at a woken owner and answered
 * normally (its outcome is whatever the store says).
 */
export type DoubtKind = 'decided' | 'undecided' | 'fresh';

export interface Delivery {
  readonly outcome: Outcome;
  /** performance.now() when it arrived. */
  readonly atMs: number;
  /** Answered (the participant applied it), or held (before the failure). */
  readonly answered: boolean;
}

export interface InDoubtParticipant {
  readonly name: string;
  readonly url: string;
  /** The bench sets this (performance.now()) at the moment it fails the owner; null while the owner is alive. */
  failedAt: number | null;
  /** Prepares received per transaction: the kind its payload said. */
  readonly prepared: Map<string, DoubtKind>;
  /** Transactions this participant voted yes to (at once, or late: answerHeld). */
  readonly votedYes: Set<string>;
  /** The transaction id of each payload tag (the bench tags its begins: their ids come back only with the prepares). */
  readonly taggedIds: Map<string, string>;
  /** Every commit/abort received, per transaction, in order. */
  readonly deliveries: Map<string, Delivery[]>;
  /** The first answered delivery of `outcome` for the transaction, if any. */
  resolvedAt(txId: string, outcome: Outcome): number | null;
  /**
   * Answers every held request now: prepares yes, commits and aborts done.
   * Sent to an owner that was paused while they were held, these are the
   * votes and acknowledgements it reads when it wakes up. What was recorded
   * stays as it was (held).
   */
  answerHeld(): number;
  /** Ends every held request (their connections), forgetting nothing recorded. */
  releaseHeld(): void;
  close(): Promise<void>;
}

const BODY_MAX_BYTES = 64 * 1024;

export async function startInDoubtParticipant(name: string, holder: boolean): Promise<InDoubtParticipant> {
  /** Held requests, each with what answering it would say, and the prepare's transaction. */
  const held = new Map<http.ServerResponse, { body: unknown; prepareOf: string | null }>();
  const hold = (res: http.ServerResponse, body: unknown, prepareOf: string | null = null) => {
    held.set(res, { body, prepareOf });
    res.on('close', () => held.delete(res));
  };
  const answer = (res: http.ServerResponse, body: unknown, status = 200) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_MAX_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const atMs = performance.now();
      const action = req.url?.split('/').pop();
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as {
        transactionId?: string;
        payload?: { kind?: DoubtKind; tag?: string } | null;
      };
      const id = String(body.transactionId);
      if (action === 'prepare') {
        const kind = body.payload?.kind ?? 'decided';
        participant.prepared.set(id, kind);
        if (typeof body.payload?.tag === 'string') participant.taggedIds.set(body.payload.tag, id);
        // Presumed abort: a prepare that comes after the abort is refused.
        if (participant.deliveries.get(id)?.some((d) => d.answered && d.outcome === 'abort')) {
          answer(res, { vote: 'no', reason: 'already aborted' });
        } else if (holder && kind === 'undecided') {
          hold(res, { vote: 'yes' }, id);
        } else {
          participant.votedYes.add(id);
          answer(res, { vote: 'yes' });
        }
        return;
      }
      if (action !== 'commit' && action !== 'abort') {
        answer(res, { error: 'unknown action' }, 404);
        return;
      }
      const answered = !holder || participant.failedAt !== null;
      const list = participant.deliveries.get(id) ?? [];
      list.push({ outcome: action, atMs, answered });
      participant.deliveries.set(id, list);
      if (answered) answer(res, {});
      else hold(res, {});
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const participant: InDoubtParticipant = {
    name,
    url: `http://127.0.0.1:${port}/tx`,
    failedAt: null,
    prepared: new Map(),
    taggedIds: new Map(),
    votedYes: new Set(),
    deliveries: new Map(),
    resolvedAt(txId, outcome) {
      return participant.deliveries.get(txId)?.find((d) => d.answered && d.outcome === outcome)?.atMs ?? null;
    },
    answerHeld() {
      const n = held.size;
      for (const [res, { body, prepareOf }] of held) {
        if (prepareOf !== null) participant.votedYes.add(prepareOf);
        answer(res, body);
      }
      held.clear();
      return n;
    },
    releaseHeld() {
      for (const res of held.keys()) res.destroy();
      held.clear();
    },
    async close() {
      participant.releaseHeld();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return participant;
}
