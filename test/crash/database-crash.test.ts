// commitd as a real process with a PostgreSQL participant: killed with
// SIGKILL after its commit decision and before phase two could reach the
// database, it finishes the prepared transaction after restarting; an orphan
// prepared while it was down is rolled back; SIGTERM closes its pools. A name
// an older build prepared under is still finished after the restart, and a
// prepared transaction finished by hand the other way while commitd was down
// is reported as the heuristic outcome it is.

import fs from 'node:fs';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { waitUntil } from '../support/participant.js';
import { postgresAvailable, startPostgres } from '../support/postgres-cluster.js';
import { startService } from '../support/service.js';
import { pgPrepares } from '../support/services-prepare.js';

const missing = postgresAvailable();
if (missing) {
  t.fail(`PostgreSQL is needed: ${missing}`);
  process.exit(1);
}

/** The deployment, set so that the test can write a name the way commitd does. */
const DEPLOYMENT = 'crash-test';

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
    COMMITD_DEPLOYMENT_ID: DEPLOYMENT,
  };
  const first = await startService(dataDir, env);
  t.teardown(() => first.kill());

  const begun = await call(first.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'debit', database: 'orders-db' }],
  });
  t.equal(begun.status, 201);
  const tx = begun.body;
  const gid = tx.participants[0].xid as string;
  await pgPrepares(cluster.url('orders'), gid, tx.id);
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
  await pgPrepares(cluster.url('orders'), `commitd-${DEPLOYMENT}:${ghost}:ghost`, ghost);

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

t.test(
  'kill -9 after the decision, finished by hand the other way while down: the restart reports the heuristic',
  async (t) => {
    const cluster = await startPostgres();
    t.teardown(() => cluster.destroy());
    await cluster.createDatabase('orders');
    await cluster.query('CREATE TABLE items (tx text PRIMARY KEY)', [], 'orders');
    const dataDir = tempDir('commitd-db-heuristic-');
    t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const env = {
      COMMITD_DATABASES: `orders-db=${cluster.url('orders')}`,
      COMMITD_PHASE_TWO_TIMEOUT_MS: '1000',
    };
    const first = await startService(dataDir, env);
    t.teardown(() => first.kill());
    const begin = async () => {
      const begun = await call(first.url, 'POST', '/v1/transactions', {
        participants: [{ name: 'debit', database: 'orders-db' }],
      });
      t.equal(begun.status, 201);
      return begun.body;
    };
    // One the DBA rolls back by hand after commitd decided commit; one
    // prepared under the name an older build gave (commitd:<tx>:<participant>),
    // which the restart must still find and commit.
    const byHand = await begin();
    await pgPrepares(cluster.url('orders'), byHand.participants[0].xid, byHand.id);
    const old = await begin();
    const oldGid = `commitd:${old.id}:debit`;
    await pgPrepares(cluster.url('orders'), oldGid, old.id);
    for (const tx of [byHand, old]) {
      t.equal((await call(first.url, 'POST', `/v1/transactions/${tx.id}/prepare`)).status, 200, 'voted yes');
    }
    cluster.stop();
    for (const tx of [byHand, old]) {
      t.equal((await call(first.url, 'POST', `/v1/transactions/${tx.id}/commit`)).status, 202, 'commit decided');
    }
    t.equal(await first.kill('SIGKILL'), null, 'killed before phase two');
    cluster.start();
    await cluster.query(`ROLLBACK PREPARED '${byHand.participants[0].xid}'`, [], 'orders'); // a DBA, the other way

    const second = await startService(dataDir, env);
    t.teardown(() => second.kill());
    const settledView = async (id: string) => {
      let view: any = null;
      await waitUntil(
        async () => {
          view = (await call(second.url, 'GET', `/v1/transactions/${id}`)).body;
          return view.state === 'committed';
        },
        15_000,
        `${id} to finish`,
      );
      return view;
    };
    const heuristic = await settledView(byHand.id);
    t.equal(heuristic.mixedOutcome, true, 'the database disagrees with the decision, and the view says so');
    t.equal(heuristic.participants[0].heuristic, 'abort');
    const history = (await call(second.url, 'GET', `/v1/transactions/${byHand.id}/history`)).body;
    t.ok(
      history.entries.some((e: any) => e.type === 'heuristic' && e.participant === 'debit' && e.heuristic === 'abort'),
      `a heuristic entry in the history: ${JSON.stringify(history.entries)}`,
    );
    t.same(await cluster.query('SELECT tx FROM items WHERE tx = $1', [byHand.id], 'orders'), [], 'what the DBA did');

    const finished = await settledView(old.id);
    t.equal(finished.mixedOutcome, false);
    t.same(
      await cluster.query('SELECT tx FROM items WHERE tx = $1', [old.id], 'orders'),
      [{ tx: old.id }],
      "the older build's name committed",
    );
    t.same(await cluster.query('SELECT gid FROM pg_prepared_xacts', [], 'orders'), [], 'nothing left prepared');
    t.equal(await second.kill('SIGTERM'), 0);
  },
);
