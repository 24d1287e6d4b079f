// The public shape of a transaction (docs/protocol.md). Payloads are not echoed back:
// they can be large and are meant for the participant alone.

import { clientKey } from '../coordinator/idempotency-keys.js';
import type { HeuristicResolution } from '../log/decision-log.js';
import { mixedOutcome } from '../protocol/answers.js';
import type { Participant, Transaction } from '../protocol/types.js';

export interface ParticipantView {
  name: string;
  /** An HTTP participant's url; a database participant has `database` and `xid` instead. */
  url?: string;
  database?: string;
  /** The prepared transaction's name in the database (gid or XA xid), null if the database is no longer configured. */
  xid?: string | null;
  /** A message participant: its subject, and the stream and sequence the broker stored it at (null until then). */
  message?: { subject: string; stream: string | null; seq: number | null };
  vote: Participant['vote'];
  acknowledged: boolean;
  heuristic?: Participant['heuristic'];
  reason?: string;
  attempts?: number;
  lastError?: string;
  heuristicResolved?: { at: string; note: string; by: string | null };
}

export interface TransactionView {
  id: string;
  state: Transaction['state'];
  outcome: Transaction['outcome'];
  /** Some participant decided the other way on its own: the effects are not atomic. */
  mixedOutcome: boolean;
  createdAt: string;
  deadline: string;
  decidedAt: string | null;
  finishedAt: string | null;
  abortReason: Transaction['abortReason'];
  idempotencyKey: string | null;
  metadata: unknown;
  participants: ParticipantView[];
}

/** The name a database participant's prepared transaction has in its database; null for a database not configured. */
export type XidNamer = (database: string, txId: string, participant: string) => string | null;

const NO_DATABASES: XidNamer = () => null;

export function transactionView(
  tx: Transaction,
  xidOf: XidNamer = NO_DATABASES,
  resolutions: readonly HeuristicResolution[] = [],
): TransactionView {
  return {
    id: tx.id,
    state: tx.state,
    outcome: tx.outcome,
    mixedOutcome: mixedOutcome(tx),
    createdAt: iso(tx.createdAtMs),
    deadline: iso(tx.deadlineMs),
    decidedAt: tx.decidedAtMs === null ? null : iso(tx.decidedAtMs),
    finishedAt: tx.finishedAtMs === null ? null : iso(tx.finishedAtMs),
    abortReason: tx.abortReason,
    idempotencyKey: tx.idempotencyKey === null ? null : clientKey(tx.idempotencyKey),
    metadata: tx.metadataJson === null ? null : JSON.parse(tx.metadataJson),
    participants: tx.participants.map((p) =>
      participantView(
        tx.id,
        p,
        xidOf,
        resolutions.find((r) => r.participant === p.name),
      ),
    ),
  };
}

function participantView(
  txId: string,
  p: Participant,
  xidOf: XidNamer,
  resolution: HeuristicResolution | undefined,
): ParticipantView {
  const view: ParticipantView = p.message
    ? {
        name: p.name,
        message: { subject: p.message.subject, stream: p.receipt?.stream ?? null, seq: p.receipt?.seq ?? null },
        vote: p.vote,
        acknowledged: p.acknowledged,
      }
    : p.database === null
      ? { name: p.name, url: p.url ?? '', vote: p.vote, acknowledged: p.acknowledged }
      : {
          name: p.name,
          database: p.database,
          xid: xidOf(p.database, txId, p.name),
          vote: p.vote,
          acknowledged: p.acknowledged,
        };
  if (p.heuristic !== null) view.heuristic = p.heuristic;
  if (p.reason !== null) view.reason = p.reason;
  if (p.attempts > 0) view.attempts = p.attempts;
  if (p.lastError !== null) view.lastError = p.lastError;
  if (resolution !== undefined) {
    view.heuristicResolved = { at: iso(resolution.atMs), note: resolution.note, by: resolution.by?.tokenId ?? null };
  }
  return view;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
