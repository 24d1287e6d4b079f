// XA participants on the local MariaDB server (a database of the test's own),
// alone and in one transaction with PostgreSQL.

import type mysql from 'mysql2/promise';
import pg from 'pg';
import t, { type Test } from 'tap';
import { LEGACY_XA_FORMAT_ID, XA_FORMAT_ID } from '../../../src/participants/databases/transaction-names.js';
import { type Harness, startHarness, tempDir } from '../../support/harness.js';
import { createMariaDatabase, type MariaDatabase, mariadbAvailable } from '../../support/mariadb.js';
import { waitUntil } from '../../support/participant.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../../support/postgres-cluster.js';

const missing = postgresAvailable() ?? (await mariadbAvailable());
if (missing) {
  // .ci/run installs and starts both: in CI this is a failure, not a skip.
  t.fail(`PostgreSQL and MariaDB are needed: ${missing}`);
  process.exit(1);
}

let cluster: PostgresCluster;
let maria: MariaDatabase;

t.before(async () => {
  cluster = await startPostgres();
  await cluster.createDatabase('orders');
  await cluster.query('CREATE TABLE items (tx text PRIMARY KEY, note text NOT NULL)', [], 'orders');
  maria = await createMariaDatabase();
  await maria.query('CREATE TABLE items (tx VARCHAR(64) PRIMARY KEY, note TEXT NOT NULL) ENGINE=InnoDB');
});
t.teardown(async () => {
  cluster.destroy();
  await maria.drop();
});

/** This test's deployment, set explicitly so the test can tell the names commitd gives. */
const DEPLOYMENT = 'xa-test';

async function harness(
  t: Test,
  participants: Record<string, number> = {},
  dataDir?: string,
  closeAtEnd = true,
): Promise<Harness> {
  const h = await startHarness(
    {
      participants: {
        orphanScanIntervalMs: 100,
        orphanSafetyIntervalMs: 300,
        deploymentId: DEPLOYMENT,
        ...participants,
      },
      databases: [
        { name: 'orders-db', kind: 'postgres', url: cluster.url('orders'), poolSize: 2 },
        { name: 'stock-db', kind: 'mysql', url: maria.url, poolSize: 2 },
      ],
    },
    dataDir,
  );
  if (closeAtEnd) t.teardown(() => h.close(true));
  return h;
}

async function post(h: Harness, url: string, payload?: object) {
  const res = await h.app.inject({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) });
  return { status: res.statusCode, body: res.json() };
}

/** The service's XA part with the xid as the view shows it; the session stays open until `close`. */
async function xaPrepares(xid: string, txId: string, note: string): Promise<mysql.Connection> {
  const c = await maria.connect();
  await c.query(`XA START ${xid}`);
  await c.query('INSERT INTO items (tx, note) VALUES (?, ?)', [txId, note]);
  await c.query(`XA END ${xid}`);
  await c.query(`XA PREPARE ${xid}`);
  return c;
}

async function mariaRows(txId: string): Promise<string[]> {
  return (await maria.query<{ note: string }>('SELECT note FROM items WHERE tx = ?', [txId])).map((r) => r.note);
}

async function xaPrepared(txId: string): Promise<number> {
  const rows = await maria.query<{ data: Buffer }>('XA RECOVER');
  return rows.filter((r) => r.data.toString('latin1').includes(txId)).length;
}

t.test('PostgreSQL and MariaDB in one transaction commit together', async (t) => {
  const h = await harness(t);
  const begun = await post(h, '/v1/transactions', {
    participants: [
      { name: 'debit', database: 'orders-db' },
      { name: 'credit', database: 'stock-db' },
    ],
  });
  t.equal(begun.status, 201);
  const tx = begun.body;
  const xid = tx.participants[1].xid as string;
  t.equal(xid, `'${DEPLOYMENT}:${tx.id}','credit',${XA_FORMAT_ID}`, 'the xid as XA START takes it');

  const client = new pg.Client({ connectionString: cluster.url('orders') });
  await client.connect();
  await client.query('BEGIN');
  await client.query('INSERT INTO items VALUES ($1, $2)', [tx.id, 'debit']);
  await client.query(`PREPARE TRANSACTION ${pg.escapeLiteral(tx.participants[0].xid)}`);
  await client.end();
  const session = await xaPrepares(xid, tx.id, 'credit');

  // The service's XA session is still open: the server will not let another
  // session finish the xid yet, so the commit is decided and waits.
  const decided = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(decided.status, 202, 'decided; the XA branch is still attached to its session');
  t.equal(decided.body.participants[1].vote, 'yes');
  t.equal(await xaPrepared(tx.id), 1, 'not taken for finished while attached');
  await session.end();
  await waitUntil(
    async () => (await h.coordinator.reads.get(tx.id)).state === 'committed',
    10_000,
    'the commit to finish',
  );
  t.same(await mariaRows(tx.id), ['credit']);
  t.same(
    (await cluster.query<{ note: string }>('SELECT note FROM items WHERE tx = $1', [tx.id], 'orders')).map(
      (r) => r.note,
    ),
    ['debit'],
  );
  t.equal(await xaPrepared(tx.id), 0, 'nothing left prepared');
});

t.test('an XA branch prepared after its vote is rolled back by the orphan scan', async (t) => {
  const h = await harness(t, { prepareTimeoutMs: 200 });
  const begun = await post(h, '/v1/transactions', { participants: [{ name: 'late', database: 'stock-db' }] });
  const tx = begun.body;
  t.equal((await post(h, `/v1/transactions/${tx.id}/commit`)).status, 409, 'no vote within the timeout');
  const session = await xaPrepares(tx.participants[0].xid, tx.id, 'late');
  await session.end();
  t.equal(await xaPrepared(tx.id), 1);
  const deadline = Date.now() + 10_000;
  while ((await xaPrepared(tx.id)) > 0) {
    if (Date.now() > deadline) throw new Error('the XA orphan was not rolled back');
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same(await mariaRows(tx.id), [], 'rolled back');
});

t.test("two databases on one XA server: neither scan takes the other one's branch for an orphan", async (t) => {
  // XA RECOVER lists the whole server, so each database's scan sees both.
  const h = await startHarness({
    participants: { orphanScanIntervalMs: 3_600_000, orphanSafetyIntervalMs: 0 },
    databases: [
      { name: 'stock-db', kind: 'mysql', url: maria.url, poolSize: 2 },
      { name: 'stock2-db', kind: 'mysql', url: maria.url, poolSize: 2 },
    ],
  });
  t.teardown(() => h.close(true));
  await h.orphans.scan(); // the scan at start is over before anything is prepared
  const tx = (await post(h, '/v1/transactions', { participants: [{ name: 'credit', database: 'stock-db' }] })).body;
  const session = await xaPrepares(tx.participants[0].xid, tx.id, 'credit');
  t.equal((await post(h, `/v1/transactions/${tx.id}/commit`)).status, 202, 'decided, the branch still attached');
  const report = await h.orphans.scan();
  t.same(report, { rolledBack: 0, waiting: 0, left: 2, failed: 0 }, 'both scans leave it to the coordinator');
  await session.end();
  await waitUntil(async () => (await h.coordinator.reads.get(tx.id)).state === 'committed', 10_000, 'the commit');
  t.same(await mariaRows(tx.id), ['credit']);
});

t.test('an XA branch an older build named (no deployment) is finished by recovery after a restart', async (t) => {
  const dataDir = tempDir('commitd-xa-legacy-');
  const first = await harness(t, {}, dataDir, false);
  const tx = (await post(first, '/v1/transactions', { participants: [{ name: 'credit', database: 'stock-db' }] })).body;
  // As the older build named it, and as its view showed it to the service.
  const legacyXid = `'${tx.id}','credit',${LEGACY_XA_FORMAT_ID}`;
  const session = await xaPrepares(legacyXid, tx.id, 'credit');
  const decided = await post(first, `/v1/transactions/${tx.id}/commit`);
  t.equal(decided.status, 202, 'voted yes on the old name; decided, the branch still attached');
  await first.close();
  await session.end();
  t.equal(await xaPrepared(tx.id), 1, 'still prepared across the restart');

  const second = await harness(t, {}, dataDir);
  await waitUntil(
    async () => (await second.coordinator.reads.get(tx.id)).state === 'committed',
    10_000,
    'recovery to commit',
  );
  t.same(await mariaRows(tx.id), ['credit'], 'committed under its old name');
  t.equal(await xaPrepared(tx.id), 0);
});

t.test(
  "another deployment's XA branch on the same server is left alone; an unknown one of its own is not",
  async (t) => {
    const h = await harness(t, { orphanScanIntervalMs: 3_600_000, orphanSafetyIntervalMs: 0 });
    await h.orphans.scan();
    const unknown = 'tx_00000000000000000000000001';
    const mine = await xaPrepares(`'${DEPLOYMENT}:${unknown}','ghost',${XA_FORMAT_ID}`, `${unknown}-m`, 'mine');
    const theirs = await xaPrepares(`'other:${unknown}','ghost',${XA_FORMAT_ID}`, `${unknown}-t`, 'theirs');
    const old = await xaPrepares(`'${unknown}','ghost',${LEGACY_XA_FORMAT_ID}`, `${unknown}-o`, 'old');
    for (const c of [mine, theirs, old]) await c.end();
    t.teardown(async () => {
      for (const xid of [`'other:${unknown}','ghost',${XA_FORMAT_ID}`, `'${unknown}','ghost',${LEGACY_XA_FORMAT_ID}`]) {
        await maria.query(`XA ROLLBACK ${xid}`).catch(() => {});
      }
    });
    const reports = [await h.orphans.scan(), await h.orphans.scan()];
    t.equal(reports[0]?.rolledBack, 1, `one rolled back: ${JSON.stringify(reports)}`);
    t.equal(reports[1]?.rolledBack, 0, 'and nothing more');
    const left = (await maria.query<{ data: Buffer }>('XA RECOVER')).map((r) => r.data.toString('latin1'));
    t.notOk(left.includes(`${DEPLOYMENT}:${unknown}ghost`), 'its own unknown one: presumed abort');
    t.ok(left.includes(`other:${unknown}ghost`), "another deployment's: not this one's business");
    t.ok(left.includes(`${unknown}ghost`), "an unknown one an older build named: perhaps another deployment's");
  },
);

t.test('a participant name longer than an XA bqual is refused on a MySQL database', async (t) => {
  const h = await harness(t);
  const res = await post(h, '/v1/transactions', { participants: [{ name: 'n'.repeat(65), database: 'stock-db' }] });
  t.equal(res.status, 400);
  t.match(res.body.detail, /at most 64 bytes/);
});
