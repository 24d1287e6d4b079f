// commitd as a real process with a PostgreSQL participant: killed with
// SIGKILL after its commit decision and before phase two could reach the
// database, it finishes the prepared transaction after restarting; an orphan
// prepared while it was down is rolled back; SIGTERM closes its pools.

import fs from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { waitUntil } from '../support/participant.js';
import { postgresAvailable, startPostgres } from '../support/postgres-cluster.js';
import { startService } from '../support/service.js';

const missing = postgresAvailable();
if (missing) {
  t.fail(`PostgreSQL is needed: ${missing}`);
  process.exit(1);
}

async function prepareIn(url: string, gid: string, txId: string): Promise<void> {
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

t.test('kill -9 after the commit decision, before phase two: the restarted commitd commits', async (t) => {
  const cluster = await startPostgres();
  t.teardown(() => cluster.destroy());
  await cluster.createDatabase('orders');
  await cluster.query('CREATE TABLE items (tx text PRIMARY KEY)', [], 'orders');
  const dataDir = tempDir('commitd-db-crash-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const env = {
    COMMITD_DATABASES: `orders-db=${cluster.url('orders')}`,
    COMMITD_ORPHAN_SCAN_INTERVAL_MS: '200',
    COMMITD_ORPHAN_SAFETY_INTERVAL_MS: '500',
    COMMITD_PHASE_TWO_TIMEOUT_MS: '1000',
  };
  const first = await startService(dataDir, env);
  t.teardown(() => first.kill());

  const begun = await call(first.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'debit', database: 'orders-db' }],
  });
  t.equal(begun.status, 201);
  const tx = begun.body;
  const gid = tx.participants[0].xid as string;
  await prepareIn(cluster.url('orders'), gid, tx.id);
  t.equal((await call(first.url, 'POST', `/v1/transactions/${tx.id}/prepare`)).status, 200, 'voted yes');

  // The database goes away, so phase two cannot happen; the decision is made
  // and durable; then commitd dies without a chance to do anything more.
  cluster.stop();
  const decided = await call(first.url, 'POST', `/v1/transactions/${tx.id}/commit`);
  t.equal(decided.status, 202, 'the commit is decided, phase two not done');
  t.equal(await first.kill('SIGKILL'), null, 'killed');
  cluster.start();
  const prepared = await cluster.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts', [], 'orders');
  t.same(
    prepared.map((r) => r.gid),
    [gid],
    'still prepared: phase two never reached the database',
  );
  // While commitd is down a service prepares under a transaction commitd
  // never had: presumed abort, rolled back after the safety interval.
  const ghost = 'tx_00000000000000000000000000';
  await prepareIn(cluster.url('orders'), `commitd:${ghost}:ghost`, ghost);

  const second = await startService(dataDir, env);
  t.teardown(() => second.kill());
  await waitUntil(() => /"recovered":1/.test(second.output()), 10_000, 'recovery');
  let state = '';
  const deadline = Date.now() + 15_000;
  while (state !== 'committed') {
    if (Date.now() > deadline) throw new Error(`not committed after restart (${state}):\n${second.output()}`);
    state = (await call(second.url, 'GET', `/v1/transactions/${tx.id}`)).body.state;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same(await cluster.query('SELECT tx FROM items WHERE tx = $1', [tx.id], 'orders'), [{ tx: tx.id }], 'committed');
  const ghostGone = Date.now() + 10_000;
  while ((await cluster.query('SELECT 1 FROM pg_prepared_xacts', [], 'orders')).length > 0) {
    if (Date.now() > ghostGone) throw new Error(`a prepared transaction was left behind:\n${second.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same(await cluster.query('SELECT tx FROM items WHERE tx = $1', [ghost], 'orders'), [], 'the orphan rolled back');
  t.match(second.output(), /orphan scan: rolled back tx_0+\/ghost in database 'orders-db'/, 'and said so');
  t.notOk(second.output().includes(cluster.url('orders')), 'the connection string is never logged');
  t.equal(await second.kill('SIGTERM'), 0, 'a clean stop closes the pools and exits 0');
});
