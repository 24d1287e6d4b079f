// What the outcome inquiry answers once a transaction is forgotten (issue 24,
// items 5 and 6), with retention shortened through the settings: a committed
// transaction whose details were compacted still answers commit, at every
// instance; past the outcome's retention (the idempotency keys'), forgotten,
// never abort; an aborted one abort; an id never begun abort, as before. On
// the SQLite log (one instance) and on a private PostgreSQL store (two
// instances). And an instance whose clock runs ahead of the others' by more
// than the retention does not forget their transactions early.

import t, { type Test } from 'tap';
import { IdGenerator } from '../../src/coordinator/ids.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startParticipant, waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { FAST_SETTINGS, type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);

const CLUSTER_SETTINGS = {
  COMMITD_LEASE_MS: '3000',
  COMMITD_PEER_PROBE_INTERVAL_MS: '100',
  COMMITD_PEER_SILENCE_MS: '1000',
};
/** Details kept 300 ms after a transaction finished, its outcome 4 s. */
const SHORT_RETENTION = {
  ...FAST_SETTINGS,
  COMMITD_RETENTION_MS: '300',
  COMMITD_IDEMPOTENCY_KEY_RETENTION_MS: '4000',
};
const WAIT_MS = 20_000;

let schemas = 0;

/** A call to `url` (a service's base URL and a path) through the tests' JSON client. */
function json(url: string, method = 'GET', body?: unknown) {
  const { origin, pathname } = new URL(url);
  return call(origin, method, pathname, body);
}

/** Instances on one fresh PostgreSQL schema, each with its own settings on top of `env`. */
async function onPostgres(t: Test, envs: Array<Record<string, string>>): Promise<Service[]> {
  const schema = `outcomes_${process.pid}_${++schemas}`;
  const services: Service[] = [];
  for (const env of envs) {
    const port = await freePort();
    const service = await startService(tempDir('commitd-outcomes-'), {
      ...CLUSTER_SETTINGS,
      COMMITD_STORE_URL: cluster().url(),
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(port),
      ...env,
    });
    t.teardown(() => service.kill('SIGKILL'));
    services.push(service);
  }
  return services;
}

async function shardsOf(service: Service): Promise<number> {
  const { body } = await json(`${service.url}/v1/cluster`);
  return body.instances.find((i: { self: boolean }) => i.self)?.shards ?? 0;
}

/** Begins at `at` with one participant and commits (or aborts): the transaction's id. */
async function finish(t: Test, at: Service, url: string, how: 'commit' | 'abort'): Promise<string> {
  const begun = await json(`${at.url}/v1/transactions`, 'POST', { participants: [{ name: 'orders', url }] });
  t.equal(begun.status, 201);
  const id = begun.body.id as string;
  const done = await json(`${at.url}/v1/transactions/${id}/${how}`, 'POST');
  t.equal(done.status, 200, JSON.stringify(done.body));
  // Finished (or, with a short retention, finished and already compacted).
  await waitUntil(async () => {
    const read = await json(`${at.url}/v1/transactions/${id}`);
    return read.status === 404 || read.body?.finishedAt != null;
  }, WAIT_MS);
  return id;
}

/** Every instance's answer to the inquiry. */
async function answers(services: Service[], id: string): Promise<string[]> {
  return Promise.all(
    services.map(async (s) => {
      const r = await json(`${s.url}/v1/transactions/${id}/outcome`);
      return r.status === 200 ? (r.body.outcome as string) : `HTTP ${r.status}`;
    }),
  );
}

/**
 * The whole life of the answers: kept details, compacted (404, the outcome
 * still kept), then forgotten. Every answer on the way is the outcome or
 * forgotten, at every instance.
 */
async function outcomesThroughForgetting(t: Test, services: Service[]): Promise<void> {
  const participant = await startParticipant();
  t.teardown(() => participant.close());
  const [first] = services as [Service];
  const committed = await finish(t, first, participant.url, 'commit');
  const aborted = await finish(t, first, participant.url, 'abort');
  const seen = new Set<string>();
  const watch = async (id: string) => {
    for (const a of await answers(services, id)) seen.add(`${id === committed ? 'committed' : 'aborted'}:${a}`);
  };

  await waitUntil(async () => {
    await watch(committed);
    await watch(aborted);
    const reads = await Promise.all(services.map((s) => json(`${s.url}/v1/transactions/${committed}`)));
    return reads.every((r) => r.status === 404);
  }, WAIT_MS);
  t.same(
    await answers(services, committed),
    services.map(() => 'commit'),
    'compacted: still commit everywhere',
  );
  t.same(
    await answers(services, aborted),
    services.map(() => 'abort'),
    'compacted, aborted: abort everywhere',
  );

  await waitUntil(async () => {
    await watch(committed);
    return (await answers(services, committed)).every((a) => a === 'forgotten');
  }, WAIT_MS);
  t.same(
    await answers(services, committed),
    services.map(() => 'forgotten'),
    'past the outcome retention',
  );
  const contrary = [...seen].filter((s) => s === 'committed:abort' || s === 'aborted:commit');
  t.same(contrary, [], `never the contrary outcome (answers seen: ${[...seen].sort().join(', ')})`);

  const neverBegun = new IdGenerator().next(Date.now() + 1000, 0);
  t.same(
    await answers(services, neverBegun),
    services.map(() => 'abort'),
    'an id never begun: presumed abort',
  );
  const bad = await json(`${first.url}/v1/transactions/not-an-id/outcome`);
  t.equal(bad.status, 400, 'a malformed id is refused');
}

t.test('SQLite log: compacted, committed answers commit; past the outcome retention, forgotten', async (t) => {
  const service = await startService(tempDir('commitd-outcomes-'), SHORT_RETENTION);
  t.teardown(() => service.kill('SIGKILL'));
  await outcomesThroughForgetting(t, [service]);
});

t.test('PostgreSQL store, two instances: the same answers at both', async (t) => {
  const services = await onPostgres(t, [SHORT_RETENTION, SHORT_RETENTION]);
  await waitUntil(async () => (await Promise.all(services.map(shardsOf))).every((n) => n === 16), WAIT_MS);
  await outcomesThroughForgetting(t, services);
});

t.test("an instance whose clock runs ahead by more than the retention keeps the others' transactions", async (t) => {
  const retention = { ...FAST_SETTINGS, COMMITD_RETENTION_MS: '60000' };
  // Ten minutes ahead: ten times the retention.
  const [a, ahead] = (await onPostgres(t, [retention, { ...retention, COMMITD_TEST_CLOCK_OFFSET_MS: '600000' }])) as [
    Service,
    Service,
  ];
  await waitUntil(async () => (await shardsOf(a)) === 16 && (await shardsOf(ahead)) === 16, WAIT_MS);
  const participant = await startParticipant();
  t.teardown(() => participant.close());
  const id = await finish(t, a, participant.url, 'commit');
  // Many sweeps of the skewed instance (every 50 ms).
  await new Promise((resolve) => setTimeout(resolve, 1500));
  for (const s of [a, ahead]) {
    t.equal((await json(`${s.url}/v1/transactions/${id}`)).status, 200, 'still readable');
    t.same((await json(`${s.url}/v1/transactions/${id}/outcome`)).body, { outcome: 'commit' });
  }
  // Its own transactions, begun and finished on its clock, are judged on it too.
  const own = await finish(t, ahead, participant.url, 'commit');
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const s of [a, ahead]) {
    t.same((await json(`${s.url}/v1/transactions/${own}/outcome`)).body, { outcome: 'commit' });
  }
});
