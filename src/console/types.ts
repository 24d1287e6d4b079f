// The shapes the console reads from commitd's admin API (docs/protocol.md,
// "Operator API"). Only what the page shows; unknown fields are ignored.

export type TxState = 'active' | 'preparing' | 'prepared' | 'committing' | 'committed' | 'aborting' | 'aborted';

export interface HeuristicResolution {
  at: string;
  note: string;
  by: string | null;
}

export interface ParticipantView {
  name: string;
  url?: string;
  database?: string;
  /** A message participant: its subject, and where the broker stored it (null until published). */
  message?: { subject: string; stream: string | null; seq: number | null };
  vote: 'yes' | 'no' | 'read-only' | null;
  acknowledged: boolean;
  heuristic?: 'commit' | 'abort';
  heuristicResolved?: HeuristicResolution;
  reason?: string;
  attempts?: number;
  lastError?: string;
}

export interface TransactionView {
  id: string;
  state: TxState;
  outcome: 'commit' | 'abort' | null;
  mixedOutcome: boolean;
  createdAt: string;
  deadline: string;
  decidedAt: string | null;
  finishedAt: string | null;
  abortReason: string | null;
  idempotencyKey: string | null;
  metadata: unknown;
  participants: ParticipantView[];
}

export interface ListPage {
  transactions: TransactionView[];
  next: string | null;
}

export interface Caller {
  role: string | null;
  tokenId: string | null;
  address: string | null;
}

/** One line of a transaction's history: `type` says which of the optional fields are there. */
export interface HistoryEntry {
  at: string;
  type: string;
  by?: Caller | string | null;
  oneShot?: boolean;
  participants?: string[];
  participant?: string;
  action?: string;
  message?: string;
  attempt?: number;
  vote?: string;
  reason?: string;
  latencyMs?: number;
  outcome?: string;
  error?: string;
  heuristic?: string;
  state?: string;
  note?: string;
  dropped?: number;
  afterEntries?: number;
}

export interface History {
  transactionId: string;
  entries: HistoryEntry[];
  truncated: boolean;
}

export interface Stats {
  inFlight: Record<string, number>;
  decidedPerSecond: { commit: number; abort: number };
  stuckParticipants: number;
  unresolvedHeuristics: number;
  oldestUnfinished: { id: string; createdAt: string; ageMs: number; state: string } | null;
  stuckAfterAttempts: number;
}
