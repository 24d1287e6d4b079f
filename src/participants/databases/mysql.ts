// MariaDB/MySQL XA transactions, on mysql2's pool. The service runs XA START,
// its work, XA END and XA PREPARE under the xid commitd gives it, then closes
// its session; commitd finds the xid in XA RECOVER and finishes it with
// XA COMMIT / XA ROLLBACK from its own connections.
//
// XA RECOVER lists every prepared xid of the server, not of one database: the
// formatID and the names tell commitd's apart, the deployment in the gtrid
// tells this deployment's from another one's on the same server, and a
// transaction id with a participant name identifies one participant however
// many databases share the server.

import type mysql from 'mysql2/promise';
import type { PhaseTwoMessage } from '../../protocol/types.js';
import type { DatabaseAdapter, FinishResult, PreparedEvidence, PreparedTransaction } from './database-adapter.js';
import {
  legacyXaXidLiteral,
  parseXaRecoverRow,
  type TransactionName,
  type XaRecoverRow,
  xaXidLiteral,
} from './transaction-names.js';

export interface MysqlOptions {
  readonly name: string;
  /** This deployment's identity, in every xid (transaction-names.ts). */
  readonly deployment: string;
  readonly url: string;
  readonly poolSize: number;
  /** Bounds connecting and every statement. */
  readonly callTimeoutMs: number;
}

/** ER_XAER_NOTA: "Unknown XID". */
const XAER_NOTA = 1397;

export class MysqlAdapter implements DatabaseAdapter {
  readonly kind = 'mysql' as const;
  readonly name: string;
  readonly listsWholeServer = true;
  private readonly deployment: string;
  private poolPromise: Promise<mysql.Pool> | null = null;
  private readonly callTimeoutMs: number;

  constructor(private readonly options: MysqlOptions) {
    this.name = options.name;
    this.deployment = options.deployment;
    this.callTimeoutMs = options.callTimeoutMs;
  }

  /** mysql2 is loaded on first use: a commitd without MySQL databases never pays for it. */
  private pool(): Promise<mysql.Pool> {
    this.poolPromise ??= import('mysql2/promise').then(({ default: client }) =>
      client.createPool({
        uri: this.options.url,
        connectionLimit: this.options.poolSize,
        connectTimeout: this.options.callTimeoutMs,
        // Beyond the pool, calls wait for a connection; the coordinator's own
        // limit on calls in flight bounds how many.
        waitForConnections: true,
        enableKeepAlive: true,
      }),
    );
    return this.poolPromise;
  }

  /** XA has nothing like PostgreSQL's transaction id to keep with the vote. */
  async findPrepared(txId: string, participant: string): Promise<PreparedEvidence | null> {
    return (await this.isPrepared(txId, participant)) ? { preparedId: null } : null;
  }

  /** Under this build's xid or an older build's. */
  private async isPrepared(txId: string, participant: string): Promise<boolean> {
    const found = await this.recover();
    return found.some(
      (t) =>
        t.txId === txId && t.participant === participant && (t.deployment === null || t.deployment === this.deployment),
    );
  }

  /**
   * XA cannot tell how a vanished xid ended: once XA COMMIT or XA ROLLBACK
   * (ours, or one by hand) has run, the server keeps nothing of the xid, and
   * offers no query for how a finished transaction ended. So a
   * branch finished by hand the other way answers `absent`, never `contrary`.
   */
  async finish(message: PhaseTwoMessage, txId: string, participant: string): Promise<FinishResult> {
    const verb = message === 'commit' ? 'XA COMMIT' : 'XA ROLLBACK';
    for (const xid of [xaXidLiteral(this.deployment, txId, participant), legacyXaXidLiteral(txId, participant)]) {
      try {
        await (await this.pool()).query({ sql: `${verb} ${xid}`, timeout: this.callTimeoutMs });
        return 'finished';
      } catch (error) {
        if ((error as { errno?: number }).errno !== XAER_NOTA) throw error;
      }
    }
    // The server answers "unknown XID" also while the xid is still attached to
    // the session that prepared it (the service has not closed it yet): only
    // a prepared xid missing from XA RECOVER is really gone. Which way it
    // ended cannot be told here.
    if (await this.isPrepared(txId, participant)) {
      throw new Error('the prepared XA transaction is still attached to the session that prepared it');
    }
    return 'absent';
  }

  async listPrepared(limit: number): Promise<PreparedTransaction[]> {
    return (await this.recover())
      .filter((t) => t.deployment === null || t.deployment === this.deployment)
      .slice(0, limit)
      .map((t) => ({ ...t, ageMs: null }));
  }

  /** commitd's xids on the whole server, every deployment's. */
  private async recover(): Promise<TransactionName[]> {
    const [rows] = await (await this.pool()).query({ sql: 'XA RECOVER', timeout: this.callTimeoutMs });
    const found: TransactionName[] = [];
    for (const row of rows as XaRecoverRow[]) {
      const name = parseXaRecoverRow(row);
      if (name) found.push(name);
    }
    return found;
  }

  async close(): Promise<void> {
    if (this.poolPromise) await (await this.poolPromise).end();
  }
}
