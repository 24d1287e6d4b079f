// The 64-bit id a PostgreSQL vote keeps with a prepared transaction (issue 24
// item 3). pg_snapshot_xmax is the oldest xid still running or unassigned,
// not the next xid: a prepared transaction is still running, so with two of
// them prepared, the later one's xid is at or above xmax. Widening its 32-bit
// xid against xmax must still give its own 64-bit id (not one an epoch
// earlier: negative in epoch 0, "in the future" to pg_xact_status).

import t from 'tap';
import { fullTransactionId, PostgresAdapter } from '../../../src/participants/databases/postgres.js';
import { postgresGid } from '../../../src/participants/databases/transaction-names.js';
import { postgresAvailable, startPostgres } from '../../support/postgres-cluster.js';
import { pgPrepares } from '../../support/services-prepare.js';

t.test('an xid at or above the reference (still running) widens into the same epoch', async (t) => {
  t.equal(fullTransactionId('736', '735'), '736', 'epoch 0, one above xmax');
  const epoch3 = 3n << 32n;
  t.equal(fullTransactionId('1010', String(epoch3 + 1005n)), String(epoch3 + 1010n), 'epoch 3, above xmax');
  t.equal(
    fullTransactionId('5', String(epoch3 + 4294967290n)),
    String(epoch3 + (1n << 32n) + 5n),
    'xmax just before the epoch turns over, the xid just after',
  );
});

t.test('real PostgreSQL: every prepared transaction of several gets its own id', async (t) => {
  const missing = postgresAvailable();
  if (missing) {
    t.fail(`PostgreSQL is needed: ${missing}`);
    return;
  }
  const cluster = await startPostgres();
  t.teardown(() => cluster.destroy());
  await cluster.createDatabase('orders');
  await cluster.query('CREATE TABLE items (tx text PRIMARY KEY)', [], 'orders');
  const adapter = new PostgresAdapter({
    name: 'orders-db',
    deployment: 'probe',
    url: cluster.url('orders'),
    poolSize: 2,
    callTimeoutMs: 5000,
    onError: () => {},
  });
  t.teardown(() => adapter.close());
  const txIds = ['tx_a', 'tx_b', 'tx_c'];
  for (const txId of txIds) await pgPrepares(cluster.url('orders'), postgresGid('probe', txId, 'debit'), txId);
  const actual = await cluster.query<{ gid: string; xid: string }>(
    'SELECT gid, transaction::text AS xid FROM pg_prepared_xacts',
    [],
    'orders',
  );
  for (const txId of txIds) {
    const evidence = await adapter.findPrepared(txId, 'debit');
    const row = actual.find((r) => r.gid === postgresGid('probe', txId, 'debit'));
    t.equal(evidence?.preparedId, row?.xid, `${txId}: the kept id is the prepared transaction's (epoch 0)`);
  }
  for (const r of actual) await cluster.query(`ROLLBACK PREPARED '${r.gid}'`, [], 'orders');
});
