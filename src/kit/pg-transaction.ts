// One PostgreSQL transaction on a client from the service's Pool: BEGIN, the
// work, COMMIT; ROLLBACK on the work's error, and a connection that could
// not even roll back is discarded rather than handed back to the pool.

import type { Pool, PoolClient } from 'pg';

export async function inPgTransaction<R>(pool: Pool, work: (client: PoolClient) => Promise<R>): Promise<R> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.release(broken);
  }
}
