// The inbox in the service's own PostgreSQL database (through `pg`): the
// message's id and the handler's work commit in one transaction. Several
// workers or processes may receive the same message at once (a redelivery
// after the ack wait while the first is still working): the primary key
// makes the second insert wait for the first transaction, then find the row
// (duplicate) or, if the first rolled back, take it over.
//
// `pg` is used only through the Pool the service passes in.

import type { Pool, PoolClient } from 'pg';
import { type InboxOutcome, type InboxStore, PRUNE_LIMIT_DEFAULT } from './inbox-store.js';
import { inPgTransaction } from './pg-transaction.js';
import { tableName } from './sqlite-store.js';

export interface PgInboxOptions {
  /** Default `commitd_inbox`; may be schema-qualified (`shop.commitd_inbox`). */
  readonly table?: string;
}

export class PgInboxStore implements InboxStore<PoolClient> {
  private constructor(
    private readonly pool: Pool,
    private readonly table: string,
  ) {}

  /** Creates the table if missing. */
  static async open(pool: Pool, options: PgInboxOptions = {}): Promise<PgInboxStore> {
    const table = (options.table ?? 'commitd_inbox').split('.').map(tableName).join('.');
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
      inbox TEXT NOT NULL,
      message_id TEXT NOT NULL,
      received_at_ms BIGINT NOT NULL,
      PRIMARY KEY (inbox, message_id)
    )`);
    // An index is created in its table's schema, so its own name is unqualified.
    const index = `${table.replace(/\./g, '_')}_by_age`;
    await pool.query(`CREATE INDEX IF NOT EXISTS ${index} ON ${table} (received_at_ms)`);
    return new PgInboxStore(pool, table);
  }

  once(inbox: string, messageId: string, work: (tx: PoolClient) => Promise<void>): Promise<InboxOutcome> {
    return inPgTransaction(this.pool, async (client) => {
      const inserted = await client.query(
        `INSERT INTO ${this.table} (inbox, message_id, received_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (inbox, message_id) DO NOTHING`,
        [inbox, messageId, Date.now()],
      );
      if (inserted.rowCount === 0) return 'duplicate'; // nothing written: the commit is empty
      await work(client);
      return 'applied';
    });
  }

  async prune(olderThanMs: number, limit = PRUNE_LIMIT_DEFAULT): Promise<number> {
    const result = await this.pool.query(
      `DELETE FROM ${this.table} WHERE (inbox, message_id) IN (
         SELECT inbox, message_id FROM ${this.table} WHERE received_at_ms < $1 LIMIT $2)`,
      [Date.now() - olderThanMs, limit],
    );
    return result.rowCount ?? 0;
  }
}
