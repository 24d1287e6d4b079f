// Transactions on the service's one better-sqlite3 connection, one at a
// time: a connection has one transaction, so callers queue, and each work
// runs inside BEGIN IMMEDIATE (COMMIT after it, ROLLBACK on its error).

import type { Database } from 'better-sqlite3';

export class SerialSqliteTransactions {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: Database) {}

  run<R>(work: (db: Database) => Promise<R>): Promise<R> {
    const next = this.queue.then(() => this.transaction(work));
    this.queue = next.catch(() => {});
    return next;
  }

  /** Resolves when every queued transaction has finished. */
  async idle(): Promise<void> {
    await this.queue;
  }

  private async transaction<R>(work: (db: Database) => Promise<R>): Promise<R> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = await work(this.db);
      this.db.exec('COMMIT');
      return result;
    } catch (error) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw error;
    }
  }
}

const byDatabase = new WeakMap<Database, SerialSqliteTransactions>();

/**
 * The one queue of a connection: the participant store and the inbox on the
 * same Database must share it, or one would BEGIN inside the other's
 * transaction.
 */
export function sqliteTransactionsOf(db: Database): SerialSqliteTransactions {
  let transactions = byDatabase.get(db);
  if (transactions === undefined) {
    transactions = new SerialSqliteTransactions(db);
    byDatabase.set(db, transactions);
  }
  return transactions;
}
