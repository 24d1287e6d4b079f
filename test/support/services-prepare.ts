// A service's part in a database participant's transaction, as process tests
// play it: its own session, one row keyed by the transaction id, prepared
// under the name commitd gives it (read off the view), session closed.

import type mysql from 'mysql2/promise';
import pg from 'pg';

/** INSERT INTO items (tx) and PREPARE TRANSACTION under `gid`, in the PostgreSQL database at `url`. */
export async function pgPrepares(url: string, gid: string, txId: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO items (tx) VALUES ($1)', [txId]);
    await client.query(`PREPARE TRANSACTION ${pg.escapeLiteral(gid)}`);
  } finally {
    await client.end();
  }
}

/** The same as an XA branch under `xid` (as XA START takes it), on a session of its own, closed after. */
export async function xaPrepares(connect: () => Promise<mysql.Connection>, xid: string, txId: string): Promise<void> {
  const c = await connect();
  try {
    await c.query(`XA START ${xid}`);
    await c.query('INSERT INTO items (tx) VALUES (?)', [txId]);
    await c.query(`XA END ${xid}`);
    await c.query(`XA PREPARE ${xid}`);
  } finally {
    await c.end();
  }
}
