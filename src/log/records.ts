// A transaction as a log row and back: the columns both stores keep (SQLite
// and PostgreSQL), participants as JSON without what lives only in memory.

import type { Participant, Transaction, TxState } from '../protocol/types.js';

export interface TxRow {
  id: string;
  state: TxState;
  outcome: 'commit' | 'abort' | null;
  abort_reason: Transaction['abortReason'];
  /** 0 or 1 in SQLite, a boolean in PostgreSQL. */
  one_shot: number | boolean;
  created_at_ms: number;
  deadline_ms: number;
  decided_at_ms: number | null;
  finished_at_ms: number | null;
  idempotency_key: string | null;
  request_hash: string | null;
  metadata: string | null;
  /** The begin's W3C traceparent; absent from snapshots kept with idempotency keys before the column existed. */
  trace_parent?: string | null;
  /** Who began it; absent or null from rows written before the column existed. */
  caller?: string | null;
  /** The beginner's token id; absent from rows and snapshots written before the column existed. */
  began_by?: string | null;
  participants: string;
}

type StoredParticipant = Pick<
  Participant,
  'name' | 'url' | 'vote' | 'voteLost' | 'reason' | 'acknowledged' | 'heuristic'
> & {
  /** Absent from records written before database participants existed, and from HTTP participants. */
  readonly database?: string;
  /** Absent when null: from HTTP participants, XA ones, and records written before it was kept. */
  readonly preparedId?: string;
};

/** The participants column of a snapshot. */
export function participantsJson(tx: Transaction): string {
  return JSON.stringify(tx.participants.map(storedParticipant));
}

function storedParticipant(p: Participant): StoredParticipant {
  // The database is written only when set: an HTTP participant's record
  // stays as it was, byte for byte.
  if (p.database !== null) {
    return {
      name: p.name,
      url: null,
      database: p.database,
      vote: p.vote,
      voteLost: p.voteLost,
      reason: p.reason,
      acknowledged: p.acknowledged,
      heuristic: p.heuristic,
      ...(p.preparedId === null ? {} : { preparedId: p.preparedId }),
    };
  }
  return {
    name: p.name,
    url: p.url,
    vote: p.vote,
    voteLost: p.voteLost,
    reason: p.reason,
    acknowledged: p.acknowledged,
    heuristic: p.heuristic,
  };
}

export function fromRow(row: TxRow, payloads: Map<string, string> | null): Transaction {
  const stored = JSON.parse(row.participants) as StoredParticipant[];
  return {
    id: row.id,
    state: row.state,
    outcome: row.outcome,
    abortReason: row.abort_reason,
    oneShot: row.one_shot === 1 || row.one_shot === true,
    commitRequested: false,
    createdAtMs: row.created_at_ms,
    deadlineMs: row.deadline_ms,
    decidedAtMs: row.decided_at_ms,
    finishedAtMs: row.finished_at_ms,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    metadataJson: row.metadata,
    traceParent: row.trace_parent ?? null,
    ...(row.caller ? { callerId: row.caller } : {}),
    beganBy: row.began_by ?? null,
    participants: stored.map(({ database, preparedId, ...p }) => ({
      ...p,
      database: database ?? null,
      preparedId: preparedId ?? null,
      payloadJson: payloads?.get(p.name) ?? null,
      attempts: 0,
      lastError: null,
    })),
  };
}
