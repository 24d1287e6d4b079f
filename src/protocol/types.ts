// The data of two-phase commit. Plain, immutable values: the protocol builds a
// new transaction for every change, so a snapshot handed to the log or to a
// reader can never change under it.

/** Every state a transaction can be in, in protocol order: the one place they are spelled. */
export const TX_STATES = ['active', 'preparing', 'prepared', 'committing', 'committed', 'aborting', 'aborted'] as const;
export type TxState = (typeof TX_STATES)[number];
/** The states of a transaction not yet finished at every participant: what the coordinator holds in memory. */
export const UNFINISHED_STATES: readonly TxState[] = TX_STATES.filter((s) => s !== 'committed' && s !== 'aborted');
export type Outcome = 'commit' | 'abort';
/** What a participant's name may be (the API's schema, and the names a participant token is bound to). */
export const PARTICIPANT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$';
export type Vote = 'yes' | 'no' | 'read-only';
export type Heuristic = 'commit' | 'abort';
export type PhaseTwoMessage = 'commit' | 'abort';
export type Message = 'prepare' | PhaseTwoMessage;

/** Why an abort was decided; kept so operators can tell a timeout from a refusal. */
export type AbortReason = 'client' | 'vote' | 'deadline' | 'recovery' | 'operator';

export interface Participant {
  readonly name: string;
  /** Where an HTTP participant listens; null for a database participant. Exactly one of url and database is set. */
  readonly url: string | null;
  /** The configured database holding this participant's prepared transaction; null for an HTTP participant. */
  readonly database: string | null;
  /** The participant's payload as JSON text (or null): the protocol never looks inside. */
  readonly payloadJson: string | null;
  readonly vote: Vote | null;
  /**
   * True when the `no` vote stands for a prepare that failed (timeout, refused
   * connection, bad answer): the participant may in fact be prepared, so it
   * must hear the abort. An explicit `no` has rolled back and hears nothing.
   */
  readonly voteLost: boolean;
  readonly reason: string | null;
  /**
   * What the `yes` vote saw of a database participant's prepared transaction
   * (PostgreSQL's 64-bit transaction id), kept with the vote so that any
   * instance, after any restart, tells a prepared transaction finished by
   * hand the other way from one finished as decided. Null for HTTP
   * participants and where the database has nothing of the kind. The
   * protocol never looks inside.
   */
  readonly preparedId: string | null;
  /** Phase two is done for it: it acknowledged, answered heuristically, or needs no message. */
  readonly acknowledged: boolean;
  readonly heuristic: Heuristic | null;
  /** Phase-two deliveries that failed since the last start; not durable. */
  readonly attempts: number;
  readonly lastError: string | null;
}

export interface Transaction {
  readonly id: string;
  readonly state: TxState;
  readonly outcome: Outcome | null;
  readonly abortReason: AbortReason | null;
  /** Begun with `"commit": true`: nobody else knows the id before the answer. */
  readonly oneShot: boolean;
  /** A client asked to commit: decide as soon as every vote is in. */
  readonly commitRequested: boolean;
  readonly createdAtMs: number;
  readonly deadlineMs: number;
  readonly decidedAtMs: number | null;
  readonly finishedAtMs: number | null;
  readonly idempotencyKey: string | null;
  /** Fingerprint of the begin request, to tell a retry from a reuse of the key. */
  readonly requestHash: string | null;
  readonly metadataJson: string | null;
  /**
   * The W3C traceparent the transaction was begun in (or null): kept with it
   * so that whatever happens to it later, recovery included, joins that
   * trace. The protocol never looks inside.
   */
  readonly traceParent: string | null;
  /**
   * Who began it (a token's id, or a client address without tokens), kept so
   * that the per-caller limits are rebuilt after a restart; absent when not
   * known (begun before it was kept). The protocol never looks at it.
   */
  readonly callerId?: string;
  /**
   * The id of the token that began it (never the token), or null: begun
   * without tokens, or by a commitd before this was kept. A client token
   * reaches only the transactions it began. The protocol never looks at it.
   */
  readonly beganBy: string | null;
  readonly participants: readonly Participant[];
}

export interface NewParticipant {
  readonly name: string;
  /** Exactly one of url and database is set. */
  readonly url: string | null;
  readonly database: string | null;
  readonly payloadJson: string | null;
}

export interface NewTransaction {
  readonly id: string;
  readonly nowMs: number;
  readonly timeoutMs: number;
  readonly oneShot: boolean;
  readonly participants: readonly NewParticipant[];
  readonly idempotencyKey: string | null;
  readonly requestHash: string | null;
  readonly metadataJson: string | null;
  /** A valid W3C traceparent, or null. */
  readonly traceParent: string | null;
  /** Who begins it; '' or absent: not known. */
  readonly callerId?: string;
  /** The beginner's token id; null (the default) when not known. */
  readonly beganBy?: string | null;
}

export type Event =
  | { readonly type: 'enlist'; readonly participant: NewParticipant }
  | { readonly type: 'prepare' }
  /**
   * `withBegin`: the commit a one-shot begin carries (the only one that may
   * start its phase one: see transitions.ts, commit).
   */
  | { readonly type: 'commit'; readonly withBegin?: boolean }
  /** `byOperator`: an admin aborted it (recorded as the abort's reason). */
  | { readonly type: 'abort'; readonly byOperator?: boolean }
  /** An operator's "retry now": phase two resent at once to every participant waiting for a retry. */
  | { readonly type: 'retry' }
  | { readonly type: 'deadline' }
  | {
      readonly type: 'vote';
      readonly participant: string;
      readonly vote: Vote;
      readonly reason?: string;
      /** Participant.preparedId. */
      readonly preparedId?: string;
    }
  | { readonly type: 'vote-lost'; readonly participant: string; readonly reason: string }
  | { readonly type: 'acknowledged'; readonly participant: string }
  | { readonly type: 'heuristic'; readonly participant: string; readonly heuristic: Heuristic }
  | { readonly type: 'delivery-failed'; readonly participant: string; readonly error: string }
  | { readonly type: 'recover' };

export type Effect =
  /** Write the transaction to the log; when forced, nothing after it happens before it is on disk. */
  | { readonly type: 'persist'; readonly forced: boolean }
  /** Send a message; `attempt` > 0 is a retry, to be delayed with backoff. */
  | { readonly type: 'send'; readonly message: Message; readonly participant: string; readonly attempt: number }
  /** Every participant has its outcome: the transaction may leave memory once persisted. */
  | { readonly type: 'finished' };

export type RefusalCode = 'conflict' | 'not-active' | 'aborted' | 'committed' | 'not-decided';

export interface Refusal {
  readonly code: RefusalCode;
  readonly detail: string;
}

/**
 * What a step produced. A refused event can still carry a change: an event
 * arriving after the deadline first aborts the transaction, then is refused.
 */
export interface Step {
  readonly tx: Transaction;
  readonly effects: readonly Effect[];
  readonly refusal: Refusal | null;
  /** The step changed the transaction or has effects to perform; false: nothing happened (a duplicate, a no-op). */
  readonly changed: boolean;
}
