// PostgreSQL prepared transactions (PREPARE TRANSACTION), on pg's pool. The
// service prepares under the gid commitd gives it; commitd finds it in
// pg_prepared_xacts and finishes it with COMMIT/ROLLBACK PREPARED from its
// own connections, which must be to the same database (a prepared transaction
// can only be finished from the database it belongs to).

import type pg from 'pg';
import type { PhaseTwoMessage } from '../../protocol/types.js';
import type { DatabaseAdapter, FinishResult, PreparedEvidence, PreparedTransaction } from './database-adapter.js';
import {
  deploymentGidPrefix,
  LEGACY_GID_PREFIX,
  legacyPostgresGid,
  parsePostgresGid,
  postgresGid,
  postgresLiteral,
} from './transaction-names.js';

export interface PostgresOptions {
  readonly name: string;
  /** This deployment's identity, in every gid (transaction-names.ts). */
  readonly deployment: string;
  readonly url: string;
  readonly poolSize: number;
  /** Bounds connecting and every statement. */
  readonly callTimeoutMs: number;
  /** A pooled connection failed while idle (the server restarted): reported, never fatal. */
  readonly onError: (error: Error) => void;
}

/** SQLSTATE 42704 undefined_object: "prepared transaction with identifier … does not exist". */
const UNDEFINED_OBJECT = '42704';

export class PostgresAdapter implements DatabaseAdapter {
  readonly kind = 'postgres' as const;
  readonly name: string;
  /** pg_prepared_xacts filtered by current_database(). */
  readonly listsWholeServer = false;
  private poolPromise: Promise<pg.Pool> | null = null;

  constructor(private readonly options: PostgresOptions) {
    this.name = options.name;
  }

  /** pg is loaded on first use: a commitd without PostgreSQL databases never pays for it. */
  private pool(): Promise<pg.Pool> {
    this.poolPromise ??= import('pg').then(({ default: client }) => {
      const o = this.options;
      const pool = new client.Pool({
        connectionString: o.url,
        max: o.poolSize,
        connectionTimeoutMillis: o.callTimeoutMs,
        query_timeout: o.callTimeoutMs,
        statement_timeout: o.callTimeoutMs,
        allowExitOnIdle: true,
      });
      // A restart of the server shows up here, on idle connections; pg drops
      // them and the next call connects afresh.
      pool.on('error', (error) => o.onError(error));
      return pool;
    });
    return this.poolPromise;
  }

  /** The gid this build gives a participant, then the one an older build gave it. */
  private gids(txId: string, participant: string): [string, string] {
    return [postgresGid(this.options.deployment, txId, participant), legacyPostgresGid(txId, participant)];
  }

  async findPrepared(txId: string, participant: string): Promise<PreparedEvidence | null> {
    const result = await (await this.pool()).query<{ xid: string; xmax: string }>(
      `SELECT transaction::text AS xid, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax
         FROM pg_prepared_xacts WHERE gid = ANY($1) AND database = current_database()`,
      [this.gids(txId, participant)],
    );
    const row = result.rows[0];
    return row === undefined ? null : { preparedId: fullTransactionId(row.xid, row.xmax) };
  }

  /**
   * `preparedId` is the prepared transaction's 64-bit id as its vote saw it,
   * kept with the vote in the decision log. If the gid is gone when phase two
   * comes, pg_xact_status on it says whether it committed or rolled back,
   * which tells a heuristic outcome (finished by hand the other way) from a
   * retry of commitd's own call, at any instance and after any restart.
   */
  async finish(
    message: PhaseTwoMessage,
    txId: string,
    participant: string,
    preparedId: string | null,
  ): Promise<FinishResult> {
    const verb = message === 'commit' ? 'COMMIT PREPARED' : 'ROLLBACK PREPARED';
    for (const gid of this.gids(txId, participant)) {
      try {
        await (await this.pool()).query(`${verb} ${postgresLiteral(gid)}`);
        return 'finished';
      } catch (error) {
        if ((error as { code?: string }).code !== UNDEFINED_OBJECT) throw error;
      }
    }
    if (preparedId === null) return 'absent';
    const status = await (await this.pool()).query<{ status: string | null }>(
      'SELECT pg_xact_status($1::xid8) AS status',
      [preparedId],
    );
    const ended = status.rows[0]?.status;
    if (ended === 'committed') return message === 'commit' ? 'finished' : 'contrary';
    if (ended === 'aborted') return message === 'abort' ? 'finished' : 'contrary';
    return 'absent'; // too old to tell
  }

  async listPrepared(limit: number): Promise<PreparedTransaction[]> {
    // This deployment's gids, and an older build's (which carry none): never
    // another deployment's, whose transactions this one knows nothing of.
    const result = await (await this.pool()).query<{ gid: string; age_ms: number }>(
      `SELECT gid, (extract(epoch FROM now() - prepared) * 1000)::float8 AS age_ms
         FROM pg_prepared_xacts
        WHERE database = current_database() AND (starts_with(gid, $1) OR starts_with(gid, $2))
        ORDER BY prepared LIMIT $3`,
      [deploymentGidPrefix(this.options.deployment), LEGACY_GID_PREFIX, limit],
    );
    const found: PreparedTransaction[] = [];
    for (const row of result.rows) {
      const name = parsePostgresGid(row.gid);
      if (name) found.push({ ...name, ageMs: Math.max(0, row.age_ms) });
    }
    return found;
  }

  async close(): Promise<void> {
    if (this.poolPromise) await (await this.poolPromise).end();
  }
}

/**
 * pg_prepared_xacts gives a 32-bit xid; pg_xact_status takes the 64-bit one.
 * The reference is pg_snapshot_xmax: the oldest xid still running or not yet
 * assigned, not the next xid, so a prepared transaction (still running) may
 * be at or above it as well as below. Either way it is less than 2^31 away
 * (wraparound protection), so its 64-bit id is the one with its low bits
 * nearest the reference: the reference's epoch, or the one before or after.
 */
export function fullTransactionId(xid: string, referenceFullXid: string): string {
  const reference = BigInt(referenceFullXid);
  const epochBits = 1n << 32n;
  let full = ((reference >> 32n) << 32n) | BigInt(xid);
  if (full - reference >= epochBits / 2n) full -= epochBits;
  else if (reference - full > epochBits / 2n) full += epochBits;
  return full.toString();
}
