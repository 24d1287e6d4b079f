// The kit's records in the service's own PostgreSQL database (through `pg`),
// so they commit in the same transaction as the service's change. Each `run`
// takes a client from the service's Pool, BEGINs, takes a transaction-scoped
// advisory lock on the key (so two processes sharing the database cannot
// both act on one message: the second waits, then reads the first's record),
// and hands the client to the service's callback.
//
// `pg` is used only through the Pool the service passes in; this module
// loads nothing itself.

import type { Pool, PoolClient } from 'pg';
import { inPgTransaction } from './pg-transaction.js';
import { payloadOf, payloadText, tableName } from './sqlite-store.js';
import type { ParticipantStore, TxKey, TxRecord } from './store.js';

export interface PgStoreOptions {
  /** Default `commitd_participant`; may be schema-qualified (`shop.commitd_participant`). */
  readonly table?: string;
}

interface Row {
  transaction_id: string;
  participant: string;
  state: TxRecord['state'];
  vote: TxRecord['vote'];
  reason: string | null;
  prepared_at_ms: string | null;
  updated_at_ms: string;
  payload: string | null;
}

export class PgParticipantStore implements ParticipantStore<PoolClient> {
  private readonly table: string;

  private constructor(
    private readonly pool: Pool,
    table: string,
  ) {
    this.table = table;
  }

  /** Creates the table if missing. */
  static async open(pool: Pool, options: PgStoreOptions = {}): Promise<PgParticipantStore> {
    const table = (options.table ?? 'commitd_participant').split('.').map(tableName).join('.');
    await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
      transaction_id TEXT NOT NULL,
      participant TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted', 'read-only')),
      vote TEXT CHECK (vote IN ('yes', 'no', 'read-only')),
      reason TEXT,
      prepared_at_ms BIGINT,
      updated_at_ms BIGINT NOT NULL,
      payload TEXT,
      PRIMARY KEY (transaction_id, participant)
    )`);
    // Tables made before the kit kept payloads lack the column: add it,
    // keeping every row (their payload reads as null). Looked up first, so an
    // up-to-date table is not locked by an ALTER at every start.
    const { rows } = await pool.query(
      `SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'payload' AND NOT attisdropped`,
      [table],
    );
    if (rows.length === 0) await pool.query(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS payload TEXT`);
    // An index is created in its table's schema, so its own name is unqualified.
    const index = `${table.replace(/\./g, '_')}_by_state`;
    await pool.query(`CREATE INDEX IF NOT EXISTS ${index} ON ${table} (state, updated_at_ms)`);
    return new PgParticipantStore(pool, table);
  }

  run<R>(key: TxKey, work: (tx: PoolClient) => Promise<R>): Promise<R> {
    return inPgTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        `commitd:${this.table}:${key.participant}:${key.transactionId}`,
      ]);
      return work(client);
    });
  }

  async read(tx: PoolClient, key: TxKey): Promise<TxRecord | null> {
    const { rows } = await tx.query<Row>(`SELECT * FROM ${this.table} WHERE transaction_id = $1 AND participant = $2`, [
      key.transactionId,
      key.participant,
    ]);
    return rows[0] === undefined ? null : fromRow(rows[0]);
  }

  async write(tx: PoolClient, r: TxRecord): Promise<void> {
    await tx.query(
      `INSERT INTO ${this.table}
         (transaction_id, participant, state, vote, reason, prepared_at_ms, updated_at_ms, payload)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (transaction_id, participant) DO UPDATE SET
         state = EXCLUDED.state, vote = EXCLUDED.vote, reason = EXCLUDED.reason,
         prepared_at_ms = EXCLUDED.prepared_at_ms, updated_at_ms = EXCLUDED.updated_at_ms,
         payload = EXCLUDED.payload`,
      [r.transactionId, r.participant, r.state, r.vote, r.reason, r.preparedAtMs, r.updatedAtMs, payloadText(r)],
    );
  }

  async prepared(limit: number): Promise<TxRecord[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT * FROM ${this.table} WHERE state = 'prepared' ORDER BY updated_at_ms LIMIT $1`,
      [limit],
    );
    return rows.map(fromRow);
  }

  async purge(beforeMs: number, limit: number): Promise<number> {
    const result = await this.pool.query(
      `DELETE FROM ${this.table} WHERE (transaction_id, participant) IN (
         SELECT transaction_id, participant FROM ${this.table}
         WHERE state <> 'prepared' AND updated_at_ms < $1 LIMIT $2)`,
      [beforeMs, limit],
    );
    return result.rowCount ?? 0;
  }

  /** The Pool belongs to the service, which ends it. */
  async close(): Promise<void> {}
}

function fromRow(row: Row): TxRecord {
  return {
    transactionId: row.transaction_id,
    participant: row.participant,
    state: row.state,
    vote: row.vote,
    reason: row.reason,
    preparedAtMs: row.prepared_at_ms === null ? null : Number(row.prepared_at_ms),
    updatedAtMs: Number(row.updated_at_ms),
    payload: payloadOf(row.payload),
  };
}
