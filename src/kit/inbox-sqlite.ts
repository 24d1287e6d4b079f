// The inbox in the service's own SQLite database (better-sqlite3): the
// message's id and the handler's work commit in one transaction. One
// connection means one transaction at a time, so `once` queues callers (as
// the participant store does); the handler receives the Database inside
// BEGIN IMMEDIATE and should do its writes there.
//
// better-sqlite3 is used only through the Database the service passes in.

import type { Database } from 'better-sqlite3';
import { type InboxOutcome, type InboxStore, PRUNE_LIMIT_DEFAULT } from './inbox-store.js';
import { tableName } from './sqlite-store.js';
import { type SerialSqliteTransactions, sqliteTransactionsOf } from './sqlite-transactions.js';

export interface SqliteInboxOptions {
  /** Default `commitd_inbox`. Letters, digits and underscores. */
  readonly table?: string;
}

export class SqliteInboxStore implements InboxStore<Database> {
  private readonly table: string;
  private readonly transactions: SerialSqliteTransactions;

  constructor(
    private readonly db: Database,
    options: SqliteInboxOptions = {},
  ) {
    this.table = tableName(options.table ?? 'commitd_inbox');
    this.transactions = sqliteTransactionsOf(db);
    db.exec(`CREATE TABLE IF NOT EXISTS ${this.table} (
      inbox TEXT NOT NULL,
      message_id TEXT NOT NULL,
      received_at_ms INTEGER NOT NULL,
      PRIMARY KEY (inbox, message_id)
    ) WITHOUT ROWID`);
    db.exec(`CREATE INDEX IF NOT EXISTS ${this.table}_by_age ON ${this.table} (received_at_ms)`);
  }

  once(inbox: string, messageId: string, work: (tx: Database) => Promise<void>): Promise<InboxOutcome> {
    return this.transactions.run(async () => {
      const inserted = this.db
        .prepare(`INSERT OR IGNORE INTO ${this.table} (inbox, message_id, received_at_ms) VALUES (?, ?, ?)`)
        .run(inbox, messageId, Date.now());
      if (inserted.changes === 0) return 'duplicate';
      await work(this.db);
      return 'applied';
    });
  }

  prune(olderThanMs: number, limit = PRUNE_LIMIT_DEFAULT): Promise<number> {
    return this.transactions.run(async () => {
      const result = this.db
        .prepare(
          `DELETE FROM ${this.table} WHERE (inbox, message_id) IN (
             SELECT inbox, message_id FROM ${this.table} WHERE received_at_ms < ? LIMIT ?)`,
        )
        .run(Date.now() - olderThanMs, limit);
      return result.changes;
    });
  }
}
