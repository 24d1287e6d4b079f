import type { Actor, HistoryEntry } from '../protocol/history.js';
import type { Transaction, TxState } from '../protocol/types.js';

export interface ListQuery {
  readonly state: TxState | null;
  readonly limit: number;
  /** Id of the last transaction of the previous page; the next page starts below it. */
  readonly after: string | null;
  /** Only transactions with a participant of this name. */
  readonly participant?: string | null;
  /** Only transactions created before this time (ms since the epoch). */
  readonly createdBeforeMs?: number | null;
  /** Only transactions with a heuristic outcome nobody has resolved yet. */
  readonly heuristicUnresolved?: boolean;
}

/** An operator's word that a heuristic outcome was dealt with by hand. */
export interface HeuristicResolution {
  readonly participant: string;
  readonly atMs: number;
  readonly note: string;
  readonly by: Actor | null;
}

export interface ListPage {
  readonly transactions: Transaction[];
  readonly next: string | null;
}

export interface FlushStats {
  readonly durationMs: number;
  readonly records: number;
  /** The flush carried a forced record: its writers hear after the next fsync. */
  readonly forced: boolean;
}

/**
 * The durable record of every transaction the coordinator may still owe an
 * outcome to. Writes are snapshots of whole transactions; the log keeps the
 * newest one per transaction.
 *
 * Reads are asynchronous: the SQLite log answers at once, a store across the
 * network (PostgreSQL) does not. The coordinator serves live transactions
 * from memory, so the log is read only for finished ones, lists, idempotency
 * keys and recovery.
 */
export interface DecisionLog {
  /** Resolves once the snapshot is on disk; no effect after it may happen before. */
  writeForced(tx: Transaction): Promise<void>;
  /** Rides along with the next flush. `onWritten` runs once it is in the log. */
  writeLazy(tx: Transaction, onWritten?: () => void): void;
  /** Writes everything queued now (readable once it resolves); forced writers still hear after their fsync. */
  flush(): Promise<void>;
  get(id: string): Promise<Transaction | undefined>;
  /**
   * The transaction begun with this (scoped) key: from the transactions
   * table, or, once its details were compacted, the snapshot kept with the key.
   */
  findByIdempotencyKey(key: string): Promise<Transaction | undefined>;
  list(query: ListQuery): Promise<ListPage>;
  /**
   * Queues history entries of a transaction; they ride along with the next
   * flush (never forcing one) and are kept as long as the transaction is.
   */
  appendHistory(txId: string, entries: readonly HistoryEntry[]): void;
  /** The transaction's history, oldest first, queued entries included. */
  history(txId: string): Promise<HistoryEntry[]>;
  /**
   * A participant's heuristic outcome that contradicts the decision is
   * recorded (as unresolved) when a snapshot carrying it is written, and kept
   * until an operator resolves it: such a transaction is not compacted before.
   * Resolves the unresolved ones of `participant` (of every participant when
   * null) of what is on disk; returns the names resolved.
   */
  resolveHeuristics(
    txId: string,
    participant: string | null,
    resolution: Omit<HeuristicResolution, 'participant'>,
  ): Promise<string[]>;
  /** The resolutions recorded for a transaction. */
  resolutions(txId: string): Promise<HeuristicResolution[]>;
  /** How many contradicting heuristic outcomes are on disk, unresolved. */
  unresolvedHeuristics(): Promise<number>;
  /**
   * Every transaction not yet finished at every participant; payloads only
   * for active ones (the only ones that may still send prepares). With
   * `shards`, only the transactions whose ids name one of them (ids.ts).
   */
  loadUnfinished(shards?: readonly number[]): Promise<Transaction[]>;
  /**
   * What the log still says of a transaction it does not hold (get found
   * nothing): `commit` for one that committed and whose details were
   * compacted, kept as long as idempotency keys are; `forgotten` for an id
   * that may be one of those whose outcome was forgotten since (it is not
   * after the newest id forgotten, ids sorting by creation); null when the
   * log never held a committed transaction of that id (it aborted, or never
   * began).
   */
  keptOutcome(id: string): Promise<'commit' | 'forgotten' | null>;
  /**
   * Forgets finished transactions that finished before `finishedBeforeMs`
   * (keeping a snapshot with each one's idempotency key, and the id of each
   * committed one), and keys and committed ids whose transaction finished
   * before `keysFinishedBeforeMs`; at most `maxRows` of each. With several
   * instances, only transactions of the shards this instance owns: each is
   * judged on its owner's clock alone. Returns how many transactions it
   * forgot.
   */
  compact(finishedBeforeMs: number, keysFinishedBeforeMs: number, maxRows: number): Promise<number>;
  /**
   * The deployment's identity (participants/databases/transaction-names.ts),
   * kept in the store: `proposed` becomes it if the store has none yet (a new
   * store, or one an older build made); otherwise the kept one stands.
   * Returns the kept one: every instance on one store answers the same.
   */
  claimDeploymentId(proposed: string): Promise<string>;
  /** Writes what is queued (what cannot be written is lost, as in a crash) and lets go of the log. */
  close(): Promise<void>;
}

/**
 * A write the store did not take, with nothing of it written: the
 * transaction's shard is no longer this instance's (`fenced`: another
 * instance took it over, src/cluster), or its decision row already holds the
 * other outcome (`decided`: insert-if-absent lost; the stored one stands).
 */
export class WriteRefusedError extends Error {
  override name = 'WriteRefusedError';
  constructor(
    readonly txId: string,
    readonly reason: 'fenced' | 'decided',
  ) {
    super(
      reason === 'fenced'
        ? `${txId}: this instance no longer owns the transaction's shard; its owner goes on with it`
        : `${txId}: the store already holds the other decision; it stands`,
    );
  }
}

/**
 * A new transaction's first record the store did not take, nothing of it
 * written: another transaction (begun at the same moment at another instance
 * on the same store) holds its idempotency key. The begin answers with that one.
 */
export class IdempotencyKeyTakenError extends Error {
  override name = 'IdempotencyKeyTakenError';
  constructor(readonly txId: string) {
    super(`${txId}: another transaction holds its idempotency key; that one stands`);
  }
}

export class LogLockedError extends Error {
  override name = 'LogLockedError';
}

export class LogUnusableError extends Error {
  override name = 'LogUnusableError';
}
