// The API's main flows with decisions in PostgreSQL (COMMITD_STORE_URL), in
// process, against a private cluster: one-shot and explicit commits, a no
// vote, an idempotent repeat, the list and the outcome inquiry, a restart
// that reads finished and unfinished transactions back from the store, and
// 503 while the store is down.

import t, { type Test } from 'tap';
import { type Harness, startHarness, tempDir } from '../support/harness.js';
import { startParticipant, type TestParticipant } from '../support/participant.js';
import { privateCluster } from '../support/postgres-cluster.js';

const cluster = privateCluster(t);

let schemas = 0;
function storeSettings(schema = `api_${++schemas}`) {
  return { log: { storeUrl: cluster().url(), storeSchema: schema } };
}

async function harness(t: Test, settings = storeSettings()): Promise<Harness> {
  const h = await startHarness(settings);
  t.teardown(() => h.close(true));
  return h;
}

async function participant(t: Test): Promise<TestParticipant> {
  const p = await startParticipant();
  t.teardown(() => p.close());
  return p;
}

const post = (h: Harness, url: string, payload?: object) => h.app.inject({ method: 'POST', url, payload });
const get = (h: Harness, url: string) => h.app.inject({ method: 'GET', url });

t.test('one-shot and explicit commits, a no vote, an idempotent repeat, list and outcome', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);
  const participants = [
    { name: 'orders', url: a.url, payload: { sku: 'A-1' } },
    { name: 'payments', url: b.url },
  ];

  const oneShot = await post(h, '/v1/transactions', { participants, commit: true });
  t.equal(oneShot.statusCode, 200, oneShot.body);
  const oneShotId = oneShot.json().id;
  t.match(oneShot.json(), { state: 'committed', outcome: 'commit' });
  t.same([a.states.get(oneShotId), b.states.get(oneShotId)], ['committed', 'committed']);

  const begun = await post(h, '/v1/transactions', { participants: [], metadata: { order: 7 } });
  t.equal(begun.statusCode, 201, begun.body);
  const id = begun.json().id;
  t.equal((await post(h, `/v1/transactions/${id}/participants`, participants[0])).statusCode, 201);
  t.equal((await post(h, `/v1/transactions/${id}/participants`, participants[1])).statusCode, 201);
  const prepared = await post(h, `/v1/transactions/${id}/prepare`);
  t.equal(prepared.statusCode, 200, prepared.body);
  t.equal(prepared.json().state, 'prepared');
  const committed = await post(h, `/v1/transactions/${id}/commit`);
  t.equal(committed.statusCode, 200, committed.body);
  t.match(committed.json(), { state: 'committed', outcome: 'commit', metadata: { order: 7 } });
  t.same([a.states.get(id), b.states.get(id)], ['committed', 'committed']);

  a.behavior = (m) =>
    m.action === 'prepare' ? { status: 200, body: { vote: 'no', reason: 'out of stock' } } : undefined;
  const refused = await post(h, '/v1/transactions', { participants, commit: true });
  t.equal(refused.statusCode, 409, refused.body);
  const refusedId = refused.json().transaction.id;
  a.behavior = null;

  const keyed = { participants, commit: true, idempotencyKey: 'order-42' };
  const first = await post(h, '/v1/transactions', keyed);
  const repeat = await post(h, '/v1/transactions', keyed);
  t.equal(first.statusCode, 200);
  t.equal(repeat.json().id, first.json().id, 'the key finds the transaction it began');

  // Once finished and out of memory, each is answered from the store.
  await h.log.flush();
  for (const [txId, outcome] of [
    [oneShotId, 'commit'],
    [id, 'commit'],
    [refusedId, 'abort'],
  ]) {
    t.equal((await get(h, `/v1/transactions/${txId}/outcome`)).json().outcome, outcome, `${txId}: ${outcome}`);
  }
  t.equal(
    (await get(h, `/v1/transactions/tx_${'0'.repeat(26)}/outcome`)).json().outcome,
    'abort',
    'unknown: presumed abort',
  );
  const listed = (await get(h, '/v1/transactions?state=committed&limit=10')).json();
  t.same(
    listed.transactions.map((tx: any) => tx.id).sort(),
    [oneShotId, id, first.json().id].sort(),
    'the list reads the store',
  );
  const rows = await cluster().query(`SELECT count(*)::int AS n FROM ${h.config.log.storeSchema}.transactions`);
  t.same(rows, [{ n: 4 }], 'every transaction is a row in the store');
});

t.test('a restart reads finished transactions back, and recovers an unfinished one', async (t) => {
  const settings = storeSettings();
  const a = await participant(t);
  const dataDir = tempDir();
  let h = await startHarness(settings, dataDir);
  const done = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], commit: true });
  t.equal(done.statusCode, 200);
  const open = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] });
  t.equal(open.statusCode, 201);
  const prepared = await post(h, `/v1/transactions/${open.json().id}/prepare`);
  t.equal(prepared.json().state, 'prepared');
  await h.close();

  h = await startHarness(settings, dataDir);
  t.teardown(() => h.close(true));
  t.equal((await get(h, `/v1/transactions/${done.json().id}`)).json().state, 'committed', 'finished: from the store');
  t.equal(h.coordinator.inFlight, 1, 'the prepared one was recovered into memory');
  const committed = await post(h, `/v1/transactions/${open.json().id}/commit`);
  t.equal(committed.statusCode, 200, committed.body);
  t.equal(a.states.get(open.json().id), 'committed');
});

t.test('while the store is down, a begin answers 503 and reads 503; then all is well again', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const before = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], commit: true });
  t.equal(before.statusCode, 200);
  await h.log.flush();
  cluster().stop();
  try {
    const begun = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] });
    t.equal(begun.statusCode, 503, begun.body);
    t.ok(begun.headers['retry-after'], 'with Retry-After');
    t.equal((await get(h, `/v1/transactions/${before.json().id}`)).statusCode, 503, 'a read of the store: 503');
    t.equal(h.readiness.logWritable, false, '/readyz reports the log unwritable');
  } finally {
    cluster().start();
  }
  const after = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], commit: true });
  t.equal(after.statusCode, 200, after.body);
  t.equal(h.readiness.logWritable, true);
});
