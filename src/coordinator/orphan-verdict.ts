// The orphan scan's question (participants/databases/orphan-scanner.ts asks
// it of every prepared transaction a database lists): is this one commitd's
// to leave, or an orphan to roll back? Answered from what the coordinator
// knows; a rollback is never the answer to "the log cannot be read now".

import type { OrphanVerdict } from '../participants/databases/orphan-scanner.js';
import { ElsewhereError, NotFoundError } from './errors.js';
import type { TransactionReads } from './transaction-reads.js';

/**
 * Whether a prepared transaction found in a database (null: somewhere on an
 * XA server) is commitd's to leave or an orphan. Left: its transaction is undecided, or decided with this
 * participant (on this database) not yet acknowledged — the coordinator is
 * finishing it, and will again after any restart, since recovery resends the
 * decision to every participant that has not acknowledged. Anything else is
 * one nobody voted on: its transaction aborted or unknown (presumed abort:
 * never begun, or finished and forgotten), a name the transaction does not
 * have on this database, or a participant already finished (its prepared
 * transaction was seen gone, so this one was prepared again afterwards).
 * `presumeAbort` false (a name an older build prepared, without a
 * deployment: it may be another deployment's): an unknown transaction is left.
 */
export async function orphanVerdict(
  reads: Pick<TransactionReads, 'outcome' | 'get'>,
  txId: string,
  participant: string,
  database: string | null,
  presumeAbort = true,
): Promise<OrphanVerdict> {
  try {
    if ((await reads.outcome(txId)) === 'pending') return 'leave';
  } catch (error) {
    // Undecided at another instance (several on one store): its owner decides.
    if (error instanceof ElsewhereError) return 'leave';
    throw error;
  }
  let tx: Awaited<ReturnType<TransactionReads['get']>>;
  try {
    tx = await reads.get(txId);
  } catch (error) {
    // Unknown: presumed abort, if the name is this deployment's.
    if (error instanceof NotFoundError) return presumeAbort ? 'orphan' : 'leave';
    // Driven by another instance, which finishes it.
    if (error instanceof ElsewhereError) return 'leave';
    // The log cannot be read now: never a reason to roll anything back.
    throw error;
  }
  const p = tx.participants.find((q) => q.name === participant);
  if (p === undefined || p.database === null || p.acknowledged) return 'orphan';
  // Found by a scan that cannot tell databases apart (XA RECOVER lists the
  // whole server): another configured database on that server may be the
  // participant's, so its name is enough to leave it be.
  return database === null || p.database === database ? 'leave' : 'orphan';
}
