// Database participants against a real PostgreSQL 15 cluster of the test's
// own (two databases in it), with commitd in-process: atomic commits, votes,
// orphans, heuristics and a restart of the server during phase two.

import pg from 'pg';
import t, { type Test } from 'tap';
import { type Harness, startHarness } from '../../support/harness.js';
import { startParticipant, waitUntil } from '../../support/participant.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../../support/postgres-cluster.js';

const missing = postgresAvailable();
if (missing) {
  // .ci/run installs PostgreSQL: in CI this is a failure, not a skip.
  t.fail(`PostgreSQL is needed: ${missing}`);
  process.exit(1);
}

let cluster: PostgresCluster;
const SAFETY_MS = 300;
/** This test's deployment, set explicitly so the test can write names the way commitd does. */
const DEPLOYMENT = 'pg-test';

t.before(async () => {
  cluster = await startPostgres();
  for (const db of ['orders', 'stock']) {
    await cluster.createDatabase(db);
    await cluster.query('CREATE TABLE items (tx text PRIMARY KEY, note text NOT NULL)', [], db);
  }
});
t.teardown(() => cluster.destroy());

async function harness(t: Test, participants: Record<string, number> = {}): Promise<Harness> {
  const h = await startHarness({
    participants: {
      orphanScanIntervalMs: 100,
      orphanSafetyIntervalMs: SAFETY_MS,
      deploymentId: DEPLOYMENT,
      ...participants,
    },
    databases: ['orders', 'stock'].map((name) => ({
      name: `${name}-db`,
      kind: 'postgres' as const,
      url: cluster.url(name),
      poolSize: 4,
    })),
  });
  t.teardown(() => h.close(true));
  return h;
}

async function post(h: Harness, url: string, payload?: object) {
  const res = await h.app.inject({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) });
  return { status: res.statusCode, body: res.json() };
}

async function begin(h: Harness, participants: unknown[]) {
  const res = await post(h, '/v1/transactions', { participants });
  if (res.status !== 201) throw new Error(`begin: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { id: string; participants: Array<{ name: string; xid: string; database: string }> };
}

/** The service's part: its own session, its work, PREPARE TRANSACTION under the gid, session closed. */
async function servicePrepares(database: string, gid: string, txId: string, note: string): Promise<void> {
  const client = new pg.Client({ connectionString: cluster.url(database) });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('INSERT INTO items (tx, note) VALUES ($1, $2)', [txId, note]);
    await client.query(`PREPARE TRANSACTION ${pg.escapeLiteral(gid)}`);
  } finally {
    await client.end();
  }
}

async function rows(database: string, txId: string): Promise<string[]> {
  return (await cluster.query<{ note: string }>('SELECT note FROM items WHERE tx = $1', [txId], database)).map(
    (r) => r.note,
  );
}

async function preparedGids(database: string): Promise<string[]> {
  return (await cluster.query<{ gid: string }>('SELECT gid FROM pg_prepared_xacts', [], database)).map((r) => r.gid);
}

t.test('two PostgreSQL databases commit atomically; the view names the gid', async (t) => {
  const h = await harness(t);
  const tx = await begin(h, [
    { name: 'debit', database: 'orders-db' },
    { name: 'credit', database: 'stock-db' },
  ]);
  const [debit, credit] = tx.participants;
  t.equal(debit?.database, 'orders-db');
  t.equal(debit?.xid, `commitd-${DEPLOYMENT}:${tx.id}:debit`, 'the documented gid');
  t.notOk('url' in (debit ?? {}), 'a database participant has no url');
  await servicePrepares('orders', debit?.xid as string, tx.id, 'debit 10');
  await servicePrepares('stock', credit?.xid as string, tx.id, 'credit 10');
  t.same(await rows('orders', tx.id), [], 'nothing visible while prepared');

  const committed = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(committed.status, 200, JSON.stringify(committed.body));
  t.equal(committed.body.state, 'committed');
  t.same(
    committed.body.participants.map((p: { vote: string; acknowledged: boolean }) => [p.vote, p.acknowledged]),
    [
      ['yes', true],
      ['yes', true],
    ],
  );
  t.same(await rows('orders', tx.id), ['debit 10']);
  t.same(await rows('stock', tx.id), ['credit 10']);
  t.same(await preparedGids('orders'), [], 'nothing left prepared');
  t.same(await preparedGids('stock'), []);
});

t.test('a service that never prepares: the vote is no, the other database rolls back, nothing is left', async (t) => {
  const h = await harness(t, { prepareTimeoutMs: 300 });
  const tx = await begin(h, [
    { name: 'debit', database: 'orders-db' },
    { name: 'credit', database: 'stock-db' },
  ]);
  await servicePrepares('orders', tx.participants[0]?.xid as string, tx.id, 'debit');
  const res = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(res.status, 409);
  t.equal(res.body.transaction.abortReason, 'vote');
  const credit = res.body.transaction.participants[1];
  t.equal(credit.vote, 'no');
  t.match(credit.reason, /no prepared transaction for 'credit' in database 'stock-db' within 300 ms/);
  await waitUntil(async () => (await h.coordinator.reads.get(tx.id)).state === 'aborted', 5000, 'the abort to finish');
  t.same(await preparedGids('orders'), [], 'the prepared debit was rolled back');
  t.same(await rows('orders', tx.id), []);
});

t.test('a service that prepares after its vote was counted: the orphan scan rolls it back', async (t) => {
  const h = await harness(t, { prepareTimeoutMs: 200 });
  const tx = await begin(h, [{ name: 'late', database: 'orders-db' }]);
  const res = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(res.status, 409, 'aborted on the missing vote');
  await waitUntil(async () => (await h.coordinator.reads.get(tx.id)).state === 'aborted', 5000, 'the abort to finish');
  const gid = tx.participants[0]?.xid as string;
  await servicePrepares('orders', gid, tx.id, 'too late');
  t.ok((await preparedGids('orders')).includes(gid), 'prepared behind the decision');
  const deadline = Date.now() + 10_000;
  while ((await preparedGids('orders')).includes(gid)) {
    if (Date.now() > deadline) throw new Error('the orphan was not rolled back');
    await new Promise((r) => setTimeout(r, 50));
  }
  t.same(await rows('orders', tx.id), [], 'rolled back, not committed');
});

t.test('the orphan scan never touches an undecided transaction, and rolls back unknown ones', async (t) => {
  const h = await harness(t, { orphanSafetyIntervalMs: 0 });
  const tx = await begin(h, [{ name: 'held', database: 'orders-db' }]);
  const gid = tx.participants[0]?.xid as string;
  await servicePrepares('orders', gid, tx.id, 'held');
  // Presumed abort: a transaction commitd never had. And someone else's gid;
  // another deployment's; one an older build prepared (no deployment in it:
  // perhaps another deployment's, so an unknown one is never rolled back).
  const unknown = 'tx_00000000000000000000000000';
  await servicePrepares('orders', `commitd-${DEPLOYMENT}:${unknown}:ghost`, unknown, 'ghost');
  const foreign = ['not-commitd:1', `commitd-other:${unknown}:ghost`, `commitd:${unknown}:old-ghost`];
  for (const [i, name] of foreign.entries()) await servicePrepares('orders', name, `foreign-${i}`, 'foreign');
  t.teardown(async () => {
    for (const name of foreign) {
      await cluster.query(`ROLLBACK PREPARED ${pg.escapeLiteral(name)}`, [], 'orders').catch(() => {});
    }
  });

  // Several scans, each allowed to roll back anything at once (interval 0).
  for (let i = 0; i < 5; i++) {
    const report = await h.orphans.scan();
    t.ok(report.left >= 1, `scan ${i}: the undecided one is left (${JSON.stringify(report)})`);
  }
  const still = await preparedGids('orders');
  t.ok(still.includes(gid), 'the undecided transaction is still prepared');
  t.notOk(still.includes(`commitd-${DEPLOYMENT}:${unknown}:ghost`), "an unknown transaction's is rolled back");
  t.ok(still.includes('not-commitd:1'), "someone else's prepared transaction is not commitd's business");
  t.ok(still.includes(`commitd-other:${unknown}:ghost`), "nor another deployment's");
  t.ok(still.includes(`commitd:${unknown}:old-ghost`), 'nor an unknown one an older build prepared');

  const res = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(res.status, 200, 'the held transaction commits afterwards');
  t.same(await rows('orders', tx.id), ['held']);
});

t.test('a committed transaction does not cover what nobody voted on: the scan rolls it back', async (t) => {
  const h = await harness(t);
  const tx = await begin(h, [{ name: 'debit', database: 'orders-db' }]);
  const gid = tx.participants[0]?.xid as string;
  await servicePrepares('orders', gid, tx.id, 'once');
  t.equal((await post(h, `/v1/transactions/${tx.id}/commit`)).status, 200);
  // A service retrying its work prepares the same gid again after the
  // commit; another prepares under a name the transaction does not have; a
  // third under the right name in the other database (gids are unique per
  // cluster, so only once the first is gone).
  const cleared = async (database: string) => {
    const deadline = Date.now() + 10_000;
    while ((await preparedGids(database)).length > 0) {
      if (Date.now() > deadline) throw new Error(`orphans of a committed transaction left prepared in ${database}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await cluster.query('DELETE FROM items WHERE tx = $1', [tx.id], 'orders');
  await servicePrepares('orders', gid, tx.id, 'twice');
  await servicePrepares('orders', `commitd-${DEPLOYMENT}:${tx.id}:stranger`, `${tx.id}-s`, 'stranger');
  // An older build's name for a transaction this log knows: ours, rolled back too.
  await servicePrepares('orders', `commitd:${tx.id}:old-stranger`, `${tx.id}-o`, 'old stranger');
  await cleared('orders');
  t.same(await rows('orders', tx.id), [], 'the second prepare was rolled back, not committed');
  t.same(await rows('orders', `${tx.id}-s`), []);
  t.same(await rows('orders', `${tx.id}-o`), []);
  await servicePrepares('stock', gid, tx.id, 'elsewhere');
  await cleared('stock');
  t.same(await rows('stock', tx.id), []);
});

t.test('finished by hand the other way: a heuristic outcome on the participant', async (t) => {
  const h = await harness(t);
  const tx = await begin(h, [{ name: 'debit', database: 'orders-db' }]);
  const gid = tx.participants[0]?.xid as string;
  await servicePrepares('orders', gid, tx.id, 'debit');
  t.equal((await post(h, `/v1/transactions/${tx.id}/prepare`)).status, 200, 'voted yes');
  await cluster.query(`ROLLBACK PREPARED ${pg.escapeLiteral(gid)}`, [], 'orders'); // a DBA
  const res = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(res.status, 200);
  t.equal(res.body.participants[0].heuristic, 'abort', 'reported, not hidden');
  t.equal(res.body.state, 'committed', 'the decision stands; the heuristic is the news');
  t.same(await rows('orders', tx.id), [], 'what the DBA did');
});

t.test('an HTTP participant and a database participant: either one voting no aborts both', async (t) => {
  const h = await harness(t);
  const http = await startParticipant();
  t.teardown(() => http.close());
  const tx = await begin(h, [
    { name: 'mail', url: http.url },
    { name: 'debit', database: 'orders-db' },
  ]);
  await servicePrepares('orders', tx.participants[1]?.xid as string, tx.id, 'debit');
  const ok = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(ok.status, 200);
  t.equal(http.states.get(tx.id), 'committed');
  t.same(await rows('orders', tx.id), ['debit']);

  http.behavior = (m) => (m.action === 'prepare' ? { status: 200, body: { vote: 'no' } } : undefined);
  const refused = await begin(h, [
    { name: 'mail', url: http.url },
    { name: 'debit', database: 'orders-db' },
  ]);
  await servicePrepares('orders', refused.participants[1]?.xid as string, refused.id, 'refused');
  t.equal((await post(h, `/v1/transactions/${refused.id}/commit`)).status, 409);
  await waitUntil(
    async () => (await h.coordinator.reads.get(refused.id)).state === 'aborted',
    5000,
    'the abort to finish',
  );
  t.same(await rows('orders', refused.id), [], 'the database rolled back');
  t.same(await preparedGids('orders'), []);
});

t.test('PostgreSQL restarts during phase two: commitd retries until it commits', async (t) => {
  const h = await harness(t);
  const tx = await begin(h, [{ name: 'debit', database: 'orders-db' }]);
  await servicePrepares('orders', tx.participants[0]?.xid as string, tx.id, 'survives');
  t.equal((await post(h, `/v1/transactions/${tx.id}/prepare`)).status, 200);
  cluster.stop();
  let restarted = false;
  t.teardown(() => {
    if (!restarted) cluster.start();
  });
  const res = await post(h, `/v1/transactions/${tx.id}/commit`);
  t.equal(res.status, 202, 'decided; the database could not be reached');
  t.ok(res.body.participants[0].attempts >= 1);
  cluster.start();
  restarted = true;
  await waitUntil(
    async () => (await h.coordinator.reads.get(tx.id)).state === 'committed',
    15_000,
    'the retried commit',
  );
  t.same(await rows('orders', tx.id), ['survives'], 'the prepared transaction outlived the restart and committed');
  t.same(await preparedGids('orders'), []);
});

t.test('bad database participants are 400 problem documents and change nothing', async (t) => {
  const h = await harness(t);
  const cases: Array<[object, RegExp]> = [
    [{ name: 'a', url: 'http://127.0.0.1:1/x', database: 'orders-db' }, /both a url and a database/],
    [{ name: 'a', database: 'nowhere' }, /database 'nowhere' is not configured/],
    [{ name: 'a' }, /needs a url or a database/],
    [{ name: 'a', database: 'orders-db', payload: { x: 1 } }, /takes no payload/],
    [{ name: 'a', database: 'bad name' }, /must match pattern/],
  ];
  for (const [participant, detail] of cases) {
    const res = await post(h, '/v1/transactions', { participants: [participant] });
    t.equal(res.status, 400, JSON.stringify(participant));
    t.equal(res.body.type, 'urn:commitd:problem:invalid-request');
    t.match(res.body.detail, detail);
  }
  t.equal(h.coordinator.inFlight, 0, 'no transaction was begun');

  const tx = await begin(h, [{ name: 'debit', database: 'orders-db' }]);
  const again = await post(h, `/v1/transactions/${tx.id}/participants`, { name: 'debit', database: 'orders-db' });
  t.equal(again.status, 200, 'the same participant again');
  const other = await post(h, `/v1/transactions/${tx.id}/participants`, { name: 'debit', database: 'stock-db' });
  t.equal(other.status, 409, 'the same name on another database');
  const asUrl = await post(h, `/v1/transactions/${tx.id}/participants`, { name: 'debit', url: 'http://127.0.0.1:1/' });
  t.equal(asUrl.status, 409, 'the same name as an HTTP participant');
  const bad = await post(h, `/v1/transactions/${tx.id}/participants`, { name: 'x', database: 'nowhere' });
  t.equal(bad.status, 400);
  t.equal((await h.coordinator.reads.get(tx.id)).participants.length, 1, 'nothing enlisted');
});
