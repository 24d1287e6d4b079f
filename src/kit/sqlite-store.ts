// The kit's records in the service's own SQLite database (better-sqlite3),
// so they commit in the same transaction as the service's change. One
// connection means one transaction at a time: `run` queues callers, and the
// service's callbacks receive the Database inside BEGIN IMMEDIATE. Do the
// service's writes there (synchronously if you can): other code writing
// through the same connection while a callback awaits would join the open
// transaction.
//
// better-sqlite3 is used only through the Database the service passes in;
// this module loads nothing itself.

import type { Database } from 'better-sqlite3';
import { type SerialSqliteTransactions, sqliteTransactionsOf } from './sqlite-transactions.js';
import type { ParticipantStore, TxKey, TxRecord } from './store.js';

export interface SqliteStoreOptions {
  /** Default `commitd_participant`. Letters, digits and underscores. */
  readonly table?: string;
}

interface Row {
  transaction_id: string;
  participant: string;
  state: TxRecord['state'];
  vote: TxRecord['vote'];
  reason: string | null;
  prepared_at_ms: number | null;
  updated_at_ms: number;
  payload: string | null;
}

export class SqliteParticipantStore implements ParticipantStore<Database> {
  private readonly table: string;
  private readonly transactions: SerialSqliteTransactions;

  constructor(
    private readonly db: Database,
    options: SqliteStoreOptions = {},
  ) {
    this.table = tableName(options.table ?? 'commitd_participant');
    this.transactions = sqliteTransactionsOf(db);
    db.exec(`CREATE TABLE IF NOT EXISTS ${this.table} (
      transaction_id TEXT NOT NULL,
      participant TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted', 'read-only')),
      vote TEXT CHECK (vote IN ('yes', 'no', 'read-only')),
      reason TEXT,
      prepared_at_ms INTEGER,
      updated_at_ms INTEGER NOT NULL,
      payload TEXT,
      PRIMARY KEY (transaction_id, participant)
    ) WITHOUT ROWID`);
    db.exec(`CREATE INDEX IF NOT EXISTS ${this.table}_by_state ON ${this.table} (state, updated_at_ms)`);
    addPayloadColumn(db, this.table);
  }

  run<R>(_key: TxKey, work: (tx: Database) => Promise<R>): Promise<R> {
    return this.transactions.run(work);
  }

  async read(tx: Database, key: TxKey): Promise<TxRecord | null> {
    const row = tx
      .prepare(`SELECT * FROM ${this.table} WHERE transaction_id = ? AND participant = ?`)
      .get(key.transactionId, key.participant) as Row | undefined;
    return row === undefined ? null : fromRow(row);
  }

  async write(tx: Database, r: TxRecord): Promise<void> {
    tx.prepare(
      `INSERT OR REPLACE INTO ${this.table}
         (transaction_id, participant, state, vote, reason, prepared_at_ms, updated_at_ms, payload)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(r.transactionId, r.participant, r.state, r.vote, r.reason, r.preparedAtMs, r.updatedAtMs, payloadText(r));
  }

  async prepared(limit: number): Promise<TxRecord[]> {
    const rows = this.db
      .prepare(`SELECT * FROM ${this.table} WHERE state = 'prepared' ORDER BY updated_at_ms LIMIT ?`)
      .all(limit) as Row[];
    return rows.map(fromRow);
  }

  async purge(beforeMs: number, limit: number): Promise<number> {
    return this.run({ transactionId: '', participant: '' }, async (tx) => {
      const result = tx
        .prepare(
          `DELETE FROM ${this.table} WHERE (transaction_id, participant) IN (
             SELECT transaction_id, participant FROM ${this.table}
             WHERE state <> 'prepared' AND updated_at_ms < ? LIMIT ?)`,
        )
        .run(beforeMs, limit);
      return result.changes;
    });
  }

  /** The Database belongs to the service, which closes it. */
  async close(): Promise<void> {
    await this.transactions.idle();
  }
}

/**
 * Tables made before the kit kept payloads lack the column: add it, keeping
 * every row (their payload reads as null). Another process on the same file
 * may add it between the look and the ALTER; that is fine.
 */
function addPayloadColumn(db: Database, table: string): void {
  const hasPayload = () =>
    (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).some((c) => c.name === 'payload');
  if (hasPayload()) return;
  try {
    db.exec(`ALTER TABLE ${table} ADD COLUMN payload TEXT`);
  } catch (error) {
    if (!hasPayload()) throw error;
  }
}

/** The record's payload as stored: JSON text, or NULL when there is none to keep. */
export function payloadText(record: TxRecord): string | null {
  return record.payload === undefined || record.payload === null ? null : JSON.stringify(record.payload);
}

export function payloadOf(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

export function tableName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid table name ${JSON.stringify(name)}`);
  return name;
}

function fromRow(row: Row): TxRecord {
  return {
    transactionId: row.transaction_id,
    participant: row.participant,
    state: row.state,
    vote: row.vote,
    reason: row.reason,
    preparedAtMs: row.prepared_at_ms,
    updatedAtMs: row.updated_at_ms,
    payload: payloadOf(row.payload),
  };
}
