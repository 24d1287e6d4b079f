// What the coordinator takes and gives: its options, a begin request, and the
// answer every call returns. Apart from coordinator.ts so that callers (the
// API, the wiring, the simulator) read the contract without the machinery.

import type { DecisionLog, ListQuery } from '../log/decision-log.js';
import type { ParticipantClient } from '../participants/participant-client.js';
import type { InvariantError } from '../protocol/assert.js';
import type { Actor } from '../protocol/history.js';
import type { step } from '../protocol/transitions.js';
import type { NewParticipant, Refusal, Transaction, TxState } from '../protocol/types.js';
import type { Timers } from '../timers.js';
import type { AboutTransaction, CoordinatorObserver } from './observer.js';

export interface CoordinatorOptions {
  readonly log: DecisionLog;
  readonly participants: ParticipantClient;
  /** Where metrics and operators hear what happens; nothing by default. */
  readonly observer?: CoordinatorObserver;
  /** Clock and timers; real ones unless a simulation passes its own. */
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Random bytes for transaction ids. */
  readonly entropy?: (bytes: number) => Buffer;
  /**
   * Called on an invariant violation (a bug). Default: crash the process, which
   * the log makes safe. The simulator records it instead.
   */
  readonly onInvariantViolation?: (error: InvariantError) => void;
  /**
   * The protocol's transition function. Always the real one in service; the
   * simulator's planted-bug tests wrap it to prove the checks catch bugs.
   */
  readonly protocolStep?: typeof step;
  readonly defaultTimeoutMs: number;
  /** Undecided transactions held at once; decided ones still delivering phase two do not count. */
  readonly inFlightMax: number;
  /** Payload and metadata held in memory, as JSON characters (about bytes), across all live transactions. */
  readonly inFlightBytesMax: number;
  /**
   * Undecided transactions one caller may hold at once, and decided ones
   * still owed phase two (each counted apart); 0: no limit per caller.
   */
  readonly inFlightPerCallerMax: number;
  /** Payload and metadata one caller's live transactions may hold; 0: no limit per caller. */
  readonly inFlightBytesPerCallerMax: number;
  readonly participantsMax: number;
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
  /** A participant is reported stuck after this many failed phase-two attempts. */
  readonly stuckAfterAttempts: number;
  /** Longest a call waits for its answer (answerWaitMsMax in protocol/answers.ts). */
  readonly answerWaitMsMax: number;
  readonly sweepIntervalMs: number;
  readonly retentionMs: number;
  /** How long an idempotency key finds its transaction after the transaction finished (its details may be gone). */
  readonly idempotencyKeyRetentionMs: number;
  /** Most finished transactions (and, apart, expired keys) forgotten per sweep. */
  readonly compactionBatchMax: number;
  /** Recovery hands out its transactions' steps while fewer participant calls than this are outstanding. */
  readonly recoveryCallsMax: number;
  /** `about`: the transaction the failure is about, when there is one, for its log line. */
  readonly onError?: (error: Error, context: string, about?: AboutTransaction) => void;
  /** With several instances: which transactions are this one's. Without: every one, ids naming no shard. */
  readonly placement?: Placement;
}

/** Where a transaction's calls are served (several instances on one store, src/cluster). */
export type Whereabouts =
  | { readonly at: 'here' }
  | { readonly at: 'peer'; readonly url: string }
  | { readonly at: 'nowhere' };

/**
 * Which transactions this instance drives: with one instance, all of them;
 * with several, those of the shards it owns (cluster/cluster-member.ts).
 */
export interface Placement {
  /** The shard a new transaction begun here goes in; null when this instance owns none now. */
  shardForNew(): number | null;
  /** Another instance that can begin one, when this one cannot (it owns no shard yet); null when none is known. */
  peerForNew(): string | null;
  whereIs(txId: string): Whereabouts;
  /**
   * Asks the store, now, whether this instance still owns the transaction's
   * shard under the epoch it believes: what a presumed abort rests on. An
   * instance that slept through a takeover still believes it owns what it
   * had; the store knows better.
   */
  confirmOwnership(txId: string): Promise<boolean>;
}

export interface BeginRequest {
  readonly participants: readonly NewParticipant[];
  readonly timeoutMs: number | null;
  readonly idempotencyKey: string | null;
  /** Whose key it is (an identity of the caller's token; '' without tokens): another scope never finds it. */
  readonly idempotencyScope: string;
  readonly requestHash: string | null;
  readonly metadataJson: string | null;
  readonly commit: boolean;
  /** Who asks: a token's id, or the client's address without tokens; '' counts against no per-caller limit. */
  readonly callerId: string;
  /** Who began it, for its history; null when not known. */
  readonly by: Actor | null;
  /** The id of the caller's token, kept with the transaction (ownership); null or absent without tokens. */
  readonly beganBy?: string | null;
  /** The valid W3C traceparent the client sent (tracing/traceparent.ts), kept with the transaction; null for none. */
  readonly traceParent?: string | null;
}

/** A call on an existing transaction: who made it, for the history; `operator` for an admin's action. */
export interface CallContext {
  readonly by: Actor | null;
  readonly operator: boolean;
  /**
   * The call may act only on transactions begun by this token id (a client
   * token's): another's answers as an unknown id does. Null or absent: any
   * (admin, participant tokens, no tokens).
   */
  readonly onlyBegunBy?: string | null;
  /** The valid W3C traceparent the call came with: the parent of its spans; null or absent for none. */
  readonly traceParent?: string | null;
}

/** What operators glance at: the console's overview, `commitd stats`. */
export interface Stats {
  readonly inFlight: ReadonlyMap<TxState, number>;
  readonly decidedPerSecond: { readonly commit: number; readonly abort: number };
  readonly stuckParticipants: number;
  readonly unresolvedHeuristics: number;
  readonly oldestUnfinished: Transaction | null;
  readonly stuckAfterAttempts: number;
}

export interface ListFilter extends ListQuery {
  /** Only transactions with a participant stuck in phase two now (from memory: attempts are not durable). */
  readonly stuck?: boolean;
}

export interface Answer {
  readonly tx: Transaction;
  readonly refusal: Refusal | null;
  /** The call changed something (a new transaction, a new participant). */
  readonly created: boolean;
}
