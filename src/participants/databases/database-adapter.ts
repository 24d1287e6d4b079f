// What commitd needs from a database that holds prepared transactions: look
// one up, finish one, list its own. One implementation per kind (postgres.ts,
// mysql.ts); database-participants.ts turns these into votes and
// acknowledgements, and orphan-scanner.ts uses the listing.

import type { PhaseTwoMessage } from '../../protocol/types.js';
import type { TransactionName } from './transaction-names.js';

export type DatabaseKind = 'postgres' | 'mysql';

/**
 * How a COMMIT/ROLLBACK PREPARED (XA COMMIT/ROLLBACK) ended:
 * - `finished`: this call finished it, or it was found finished the same way;
 * - `absent`: no such prepared transaction, and how it ended cannot be told;
 * - `contrary`: it was found finished the other way (by hand): a heuristic outcome.
 */
export type FinishResult = 'finished' | 'absent' | 'contrary';

/** What a vote saw of a prepared transaction, kept with the vote in the decision log. */
export interface PreparedEvidence {
  /**
   * PostgreSQL's 64-bit id of the prepared transaction: once its gid is gone,
   * pg_xact_status on it says how it ended, at any instance, after any
   * restart. Null where the database has nothing of the kind (XA).
   */
  readonly preparedId: string | null;
}

export interface PreparedTransaction extends TransactionName {
  /** How long ago it was prepared, by the database's clock; null when the database does not say. */
  readonly ageMs: number | null;
}

/** Calls throw on any database failure (refused connection, timeout, a restart under way). */
export interface DatabaseAdapter {
  readonly kind: DatabaseKind;
  /** The configured name. */
  readonly name: string;
  /**
   * listPrepared sees the whole server, not this database alone (XA RECOVER):
   * what it finds may belong to another configured database on the same server.
   */
  readonly listsWholeServer: boolean;
  /**
   * This participant's transaction as prepared in the database now (under its
   * name, or the name an older build gave it), or null when it is not.
   */
  findPrepared(txId: string, participant: string): Promise<PreparedEvidence | null>;
  /** `preparedId`: what the vote saw (PreparedEvidence), null when nothing was kept. */
  finish(message: PhaseTwoMessage, txId: string, participant: string, preparedId: string | null): Promise<FinishResult>;
  /**
   * This deployment's prepared transactions in this database, and those an
   * older build prepared (no deployment in their names), at most `limit`.
   */
  listPrepared(limit: number): Promise<PreparedTransaction[]>;
  close(): Promise<void>;
}
