// Two deployments of commitd (two processes, each with a decision store of its
// own) sharing one PostgreSQL database and one MariaDB server (a database
// each). Deployment 1 decides commit, its path to the databases is cut before
// phase two, and it is killed with SIGKILL: its work stays prepared. The other
// deployment's orphan scan sees it (pg_prepared_xacts of the same database,
// XA RECOVER of the whole server) and must leave it alone however long it
// waits: the transaction is not its own. Deployment 1 restarts and commits.

import fs from 'node:fs';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { createMariaDatabase, MARIADB_URL_BASE, mariadbAvailable } from '../support/mariadb.js';
import { waitUntil } from '../support/participant.js';
import { postgresAvailable, startPostgres } from '../support/postgres-cluster.js';
import { startService } from '../support/service.js';
import { pgPrepares, xaPrepares } from '../support/services-prepare.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const missing = postgresAvailable() ?? (await mariadbAvailable());
if (missing) {
  t.fail(`PostgreSQL and MariaDB are needed: ${missing}`);
  process.exit(1);
}

const ORPHAN_SETTINGS = {
  COMMITD_ORPHAN_SCAN_INTERVAL_MS: '100',
  COMMITD_ORPHAN_SAFETY_INTERVAL_MS: '300',
  COMMITD_PHASE_TWO_TIMEOUT_MS: '1000',
};

t.test("a deployment's orphan scan never rolls back another deployment's prepared work", async (t) => {
  const cluster = await startPostgres();
  t.teardown(() => cluster.destroy());
  await cluster.createDatabase('orders');
  await cluster.query('CREATE TABLE items (tx text PRIMARY KEY)', [], 'orders');
  const stock1 = await createMariaDatabase();
  const stock2 = await createMariaDatabase();
  t.teardown(() => Promise.all([stock1.drop(), stock2.drop()]));
  for (const stock of [stock1, stock2]) await stock.query('CREATE TABLE items (tx VARCHAR(64) PRIMARY KEY)');

  // Deployment 1 reaches both servers through proxies the test can cut.
  const pgProxy = await startTcpProxy(cluster.port);
  const mariaProxy = await startTcpProxy(Number(new URL(MARIADB_URL_BASE).port || 3306));
  t.teardown(() => Promise.all([pgProxy.close(), mariaProxy.close()]));
  const mariaUrl = (port: number, db: string) => {
    const u = new URL(MARIADB_URL_BASE);
    u.port = String(port);
    u.pathname = `/${db}`;
    return u.toString();
  };
  const pgUrlVia = (port: number) => cluster.url('orders').replace(`:${cluster.port}/`, `:${port}/`);

  const dir1 = tempDir('commitd-deploy1-');
  const dir2 = tempDir('commitd-deploy2-');
  t.teardown(() => {
    fs.rmSync(dir1, { recursive: true, force: true });
    fs.rmSync(dir2, { recursive: true, force: true });
  });
  const env1Proxied = {
    ...ORPHAN_SETTINGS,
    COMMITD_DATABASES: `orders-db=${pgUrlVia(pgProxy.port)},stock-db=${mariaUrl(mariaProxy.port, stock1.name)}`,
  };
  const env1Direct = {
    ...ORPHAN_SETTINGS,
    COMMITD_DATABASES: `orders-db=${cluster.url('orders')},stock-db=${stock1.url}`,
  };
  const env2 = {
    ...ORPHAN_SETTINGS,
    COMMITD_DATABASES: `orders-db=${cluster.url('orders')},stock-db=${stock2.url}`,
  };

  const first = await startService(dir1, env1Proxied);
  t.teardown(() => first.kill());
  const second = await startService(dir2, env2);
  t.teardown(() => second.kill());

  const begun = await call(first.url, 'POST', '/v1/transactions', {
    participants: [
      { name: 'debit', database: 'orders-db' },
      { name: 'credit', database: 'stock-db' },
    ],
  });
  t.equal(begun.status, 201);
  const tx = begun.body;
  await pgPrepares(cluster.url('orders'), tx.participants[0].xid, tx.id);
  await xaPrepares(stock1.connect, tx.participants[1].xid, tx.id);
  t.equal((await call(first.url, 'POST', `/v1/transactions/${tx.id}/prepare`)).status, 200, 'both voted yes');

  // Phase two cannot reach the databases; the decision is on disk; then
  // deployment 1 dies.
  pgProxy.hold();
  mariaProxy.hold();
  const decided = await call(first.url, 'POST', `/v1/transactions/${tx.id}/commit`);
  t.equal(decided.status, 202, 'the commit is decided and acknowledged, phase two not done');
  t.equal(await first.kill('SIGKILL'), null, 'deployment 1 killed');
  await pgProxy.close();
  await mariaProxy.close();

  // Deployment 2 scans every 100 ms and rolls back an orphan after 300 ms:
  // fifteen scans see deployment 1's prepared work.
  await new Promise((r) => setTimeout(r, 1500));
  const pgPrepared = await cluster.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts', [], 'orders');
  t.same(
    pgPrepared.map((r) => r.gid),
    [tx.participants[0].xid],
    "deployment 2 left deployment 1's PostgreSQL prepared transaction alone",
  );
  const xaPrepared = (await stock1.query<{ data: Buffer }>('XA RECOVER')).filter((r) =>
    r.data.toString('latin1').includes(tx.id),
  );
  t.equal(xaPrepared.length, 1, "deployment 2 left deployment 1's XA transaction alone");
  t.notMatch(second.output(), /orphan scan: rolled back/, 'and deployment 2 rolled nothing back');

  const restarted = await startService(dir1, env1Direct);
  t.teardown(() => restarted.kill());
  let view: any = null;
  await waitUntil(
    async () => {
      view = (await call(restarted.url, 'GET', `/v1/transactions/${tx.id}`)).body;
      return view.state === 'committed';
    },
    15_000,
    'the restarted deployment 1 to finish its commit',
  );
  t.equal(view.mixedOutcome, false);
  t.same(
    await cluster.query('SELECT tx FROM items WHERE tx = $1', [tx.id], 'orders'),
    [{ tx: tx.id }],
    'PostgreSQL row committed',
  );
  t.same(await stock1.query('SELECT tx FROM items WHERE tx = ?', [tx.id]), [{ tx: tx.id }], 'MariaDB row committed');
  t.equal(await restarted.kill('SIGTERM'), 0);
  t.equal(await second.kill('SIGTERM'), 0);
});
