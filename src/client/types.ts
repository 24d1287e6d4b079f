// The shapes of commitd's client API (docs/protocol.md), as the typed client returns them.

export type TxState = 'active' | 'preparing' | 'prepared' | 'committing' | 'committed' | 'aborting' | 'aborted';
export type Outcome = 'commit' | 'abort';

export interface ParticipantView {
  readonly name: string;
  readonly url: string;
  readonly vote: 'yes' | 'no' | 'read-only' | null;
  readonly acknowledged: boolean;
  readonly heuristic?: Outcome;
  readonly reason?: string;
  readonly attempts?: number;
  readonly lastError?: string;
}

export interface Transaction {
  readonly id: string;
  readonly state: TxState;
  readonly outcome: Outcome | null;
  readonly createdAt: string;
  readonly deadline: string;
  readonly decidedAt: string | null;
  readonly finishedAt: string | null;
  readonly abortReason: string | null;
  readonly idempotencyKey: string | null;
  readonly metadata: unknown;
  readonly participants: readonly ParticipantView[];
}

export interface NewParticipant {
  readonly name: string;
  readonly url: string;
  readonly payload?: unknown;
}

export interface BeginOptions {
  readonly participants?: readonly NewParticipant[];
  readonly timeoutMs?: number;
  /**
   * Makes retries of this begin safe: commitd answers a repeat with the same
   * transaction. The client makes one up when retries are on and none is given.
   */
  readonly idempotencyKey?: string;
  readonly metadata?: Record<string, unknown>;
}

export interface ListOptions {
  readonly state?: TxState;
  readonly limit?: number;
  readonly after?: string;
}

export interface TransactionPage {
  readonly transactions: readonly Transaction[];
  readonly next: string | null;
}

/** RFC 9457 problem details, as commitd answers errors. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly [extra: string]: unknown;
}
