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
  /** Is this participant's transaction prepared in the database now? */
  isPrepared(txId: string, participant: string): Promise<boolean>;
  finish(message: PhaseTwoMessage, txId: string, participant: string): Promise<FinishResult>;
  /** commitd's prepared transactions in this database, at most `limit` of them. */
  listPrepared(limit: number): Promise<PreparedTransaction[]>;
  close(): Promise<void>;
}
