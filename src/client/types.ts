// The shapes of commitd's client API (docs/protocol.md), as the typed client returns them.

export type TxState = 'active' | 'preparing' | 'prepared' | 'committing' | 'committed' | 'aborting' | 'aborted';
export type Outcome = 'commit' | 'abort';
/**
 * The outcome inquiry's answer: the outcome, pending while undecided, or
 * forgotten: finished longer ago than commitd keeps outcomes, which it no
 * longer knows (never the contrary one).
 */
export type InquiryOutcome = Outcome | 'pending' | 'forgotten';

export type Vote = 'yes' | 'no' | 'read-only';
export type AbortReason = 'client' | 'vote' | 'deadline' | 'recovery' | 'operator';

export interface ParticipantView {
  readonly name: string;
  /** An HTTP participant's URL; a database participant has `database` and `xid` instead. */
  readonly url?: string;
  readonly database?: string;
  /** The prepared transaction's name in the database; null when the database is no longer configured. */
  readonly xid?: string | null;
  readonly vote: Vote | null;
  readonly acknowledged: boolean;
  /** The participant decided on its own, the other way from the outcome. */
  readonly heuristic?: Outcome;
  /** Present once an operator marked the heuristic as resolved (`resolve`). */
  readonly heuristicResolved?: HeuristicResolution;
  readonly reason?: string;
  /** Failed deliveries in a row; present when more than 0. */
  readonly attempts?: number;
  readonly lastError?: string;
}

export interface HeuristicResolution {
  readonly at: string;
  readonly note: string;
  /** Who resolved it (the admin token's id), null when unknown. */
  readonly by: string | null;
}

export interface Transaction {
  readonly id: string;
  readonly state: TxState;
  readonly outcome: Outcome | null;
  /** Some participant decided the other way on its own: the effects are not atomic. */
  readonly mixedOutcome: boolean;
  readonly createdAt: string;
  readonly deadline: string;
  readonly decidedAt: string | null;
  readonly finishedAt: string | null;
  readonly abortReason: AbortReason | null;
  readonly idempotencyKey: string | null;
  readonly metadata: unknown;
  readonly participants: readonly ParticipantView[];
}

/**
 * A participant to begin or enlist with, one of three kinds told apart by
 * which of `url`, `database` and `message` it has (exactly one).
 */
export type NewParticipant = NewHttpParticipant | NewDatabaseParticipant | NewMessageParticipant;

/** An HTTP participant: commitd sends it prepare, commit and abort (the kit answers them). */
export interface NewHttpParticipant {
  readonly name: string;
  readonly url: string;
  /** Handed to the participant's prepare (JSON). */
  readonly payload?: unknown;
  readonly database?: never;
  readonly message?: never;
}

/**
 * A database configured in commitd (`COMMITD_DATABASES`): the service
 * prepares its work there under the transaction view's `xid` itself, so it
 * takes no payload.
 */
export interface NewDatabaseParticipant {
  readonly name: string;
  readonly database: string;
  readonly url?: never;
  readonly payload?: never;
  readonly message?: never;
}

/** A message commitd publishes when, and only when, the transaction commits. */
export interface NewMessageParticipant {
  readonly name: string;
  readonly message: {
    readonly subject: string;
    /** The message's body is exactly this, as JSON. */
    readonly data: unknown;
    readonly headers?: Readonly<Record<string, string>>;
  };
  readonly url?: never;
  readonly database?: never;
  readonly payload?: never;
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
  /** Only transactions with a participant unacknowledged after the stuck threshold of attempts. */
  readonly stuck?: boolean;
  /** Only transactions with a heuristic that contradicts the outcome and nobody resolved. */
  readonly heuristicUnresolved?: boolean;
  /** Only transactions created more than this long ago. */
  readonly olderThanMs?: number;
  /** Only transactions with a participant of this name. */
  readonly participant?: string;
  readonly limit?: number;
  /** The cursor: `next` of the previous page. */
  readonly after?: string;
}

export interface TransactionPage {
  readonly transactions: readonly Transaction[];
  readonly next: string | null;
}

export interface ResolveOptions {
  /** Why the heuristic is considered settled (1 to 1000 characters). */
  readonly note: string;
  /** Only this participant's heuristic; all unresolved ones when absent. */
  readonly participant?: string;
}

/** Who made a call: the token's role and id (null without tokens), and the address it came from. */
export interface Caller {
  readonly role: string | null;
  readonly tokenId: string | null;
  readonly address: string | null;
}

type Message = 'prepare' | 'commit' | 'abort';

/**
 * One event of a transaction's history; `at` is an ISO-8601 time, `latencyMs`
 * how long the participant took to answer (when it is known), `by` who called
 * (null when nobody did: recovery, a deadline).
 */
export type HistoryEntry = { readonly at: string } & (
  | {
      readonly type: 'begun';
      readonly by: Caller | null;
      readonly oneShot: boolean;
      readonly participants: readonly string[];
    }
  | { readonly type: 'enlisted'; readonly participant: string }
  | { readonly type: 'requested'; readonly action: Message; readonly by: Caller | null }
  | {
      readonly type: 'voted';
      readonly participant: string;
      readonly vote: Vote;
      readonly reason?: string;
      readonly latencyMs?: number;
    }
  | { readonly type: 'vote-lost'; readonly participant: string; readonly reason: string; readonly latencyMs?: number }
  | {
      readonly type: 'decided';
      readonly outcome: Outcome;
      readonly reason: 'all-voted-yes' | 'client' | 'vote' | 'deadline' | 'recovery' | 'operator';
    }
  | {
      readonly type: 'delivery-failed';
      readonly participant: string;
      readonly message: Message;
      readonly attempt: number;
      readonly error: string;
      readonly latencyMs?: number;
    }
  | {
      readonly type: 'acknowledged';
      readonly participant: string;
      readonly message: Message;
      readonly latencyMs?: number;
    }
  | { readonly type: 'heuristic'; readonly participant: string; readonly heuristic: Outcome }
  | { readonly type: 'recovered'; readonly state: TxState }
  | { readonly type: 'finished' }
  | { readonly type: 'operator-retry'; readonly by: Caller | null }
  | {
      readonly type: 'heuristic-resolved';
      readonly participant: string;
      readonly note: string;
      readonly by: Caller | null;
    }
  | { readonly type: 'truncated'; readonly afterEntries: number }
);

export interface TransactionHistory {
  readonly transactionId: string;
  /** Oldest first. */
  readonly entries: readonly HistoryEntry[];
  /** Entries were dropped: the history is bounded per transaction. */
  readonly truncated: boolean;
}

export interface Stats {
  /** Undecided or still delivering, by state. */
  readonly inFlight: Readonly<Record<'active' | 'preparing' | 'prepared' | 'committing' | 'aborting', number>>;
  /** Decisions per second, averaged over the last 10 s. */
  readonly decidedPerSecond: Readonly<Record<Outcome, number>>;
  readonly stuckParticipants: number;
  readonly unresolvedHeuristics: number;
  readonly oldestUnfinished: {
    readonly id: string;
    readonly createdAt: string;
    readonly ageMs: number;
    readonly state: TxState;
  } | null;
  /** The stuck threshold: failed attempts in a row. */
  readonly stuckAfterAttempts: number;
}

/** RFC 9457 problem details, as commitd answers errors. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly [extra: string]: unknown;
}
