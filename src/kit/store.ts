// What the kit remembers of each transaction, and the interface a store
// implements. The record is written in the same local database transaction
// as the service's own change (`run` hands the service that transaction), so
// a crash can never leave a change without its record or a record without
// its change.

export type Vote = 'yes' | 'no' | 'read-only';

/**
 * prepared: voted yes, holding its change until told.
 * committed / aborted: finished (aborted also covers a no vote and the
 * tombstone of an abort that came before any prepare).
 * read-only: voted read-only, nothing to finish.
 */
export type RecordState = 'prepared' | 'committed' | 'aborted' | 'read-only';

export interface TxKey {
  readonly transactionId: string;
  /** The participant name commitd enlisted this service under. */
  readonly participant: string;
}

export interface TxRecord extends TxKey {
  readonly state: RecordState;
  /** The vote given, or null for a tombstone (aborted before any prepare). */
  readonly vote: Vote | null;
  readonly reason: string | null;
  readonly preparedAtMs: number | null;
  readonly updatedAtMs: number;
  /**
   * The payload prepare received, kept while the record is `prepared` so
   * commit and abort get it too; null once finished, for other states, and
   * for records written before the kit kept payloads. A store that leaves it
   * out hands commit and abort null.
   */
  readonly payload?: unknown;
}

/**
 * A durable home for the kit's records, sharing its transactions with the
 * service. `Tx` is what the service's callbacks receive to do their work in
 * (a better-sqlite3 Database inside BEGIN, a pg PoolClient inside BEGIN, …).
 */
export interface ParticipantStore<Tx> {
  /**
   * Runs `work` in one local transaction: committed if it resolves, rolled
   * back if it throws. Calls for the same key never overlap (the kit holds a
   * lock per key in-process; a store shared by several processes must also
   * lock, e.g. on the key, inside the transaction).
   */
  run<R>(key: TxKey, work: (tx: Tx) => Promise<R>): Promise<R>;
  /** Reads the record inside a transaction of `run`. */
  read(tx: Tx, key: TxKey): Promise<TxRecord | null>;
  /** Inserts or replaces the record inside a transaction of `run`. */
  write(tx: Tx, record: TxRecord): Promise<void>;
  /** Records still prepared, oldest first, at most `limit`. */
  prepared(limit: number): Promise<TxRecord[]>;
  /** Deletes finished records last changed before `beforeMs`, at most `limit`; answers how many. */
  purge(beforeMs: number, limit: number): Promise<number>;
  close(): Promise<void>;
}
