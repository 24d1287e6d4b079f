// Several commitd processes on one private PostgreSQL cluster, each failure
// made on purpose: a call sent to an instance that does not own the
// transaction; the owner SIGKILLed with one transaction decided but not yet
// delivered and one undecided; the owner paused (SIGSTOP) past the silence
// bound while the client goes on through another instance, then woken up
// still believing it owns what it had; SIGTERM; a newcomer. Each must end
// with every participant holding the one outcome, and with the stale instance
// changing nothing. And one instance cut off from PostgreSQL alone (its
// peers still reach it), its writes held in the network and delivered after
// the takeover. Times are printed, not asserted (bench:takeover measures them).

import t, { type Test } from 'tap';
import { tempDir } from '../support/harness.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';
import { startTcpProxy } from '../support/tcp-proxy.js';

const cluster = privateCluster(t);

/** Short bounds so that a test takes seconds: a paused instance is taken over after 1 s of silence. */
const CLUSTER_SETTINGS = {
  COMMITD_LEASE_MS: '3000',
  COMMITD_PEER_PROBE_INTERVAL_MS: '100',
  COMMITD_PEER_SILENCE_MS: '1000',
};
/** How long a takeover may take before the test calls it broken (the goal is far below). */
const SETTLE_MS = 15_000;

let schemas = 0;

interface Instance {
  readonly port: number;
  service: Service;
}

async function instances(t: Test, count: number, env: Record<string, string> = {}) {
  const schema = `instances_${++schemas}`;
  /** `storeUrl`: the store's address as this instance reaches it (through a proxy, say). */
  const start = async (port: number, storeUrl = cluster().url()): Promise<Service> => {
    const service = await startService(tempDir('commitd-cluster-'), {
      ...CLUSTER_SETTINGS,
      COMMITD_STORE_URL: storeUrl,
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(port),
      ...env,
    });
    t.teardown(() => service.kill('SIGKILL'));
    return service;
  };
  const all: Instance[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    all.push({ port, service: await start(port) });
  }
  return { all, start, schema };
}

async function json(url: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function shardsOf(service: Service): Promise<number> {
  const { body } = await json(`${service.url}/v1/cluster`);
  return body.instances.find((i: { self: boolean }) => i.self)?.shards ?? 0;
}

/** Until the instances own `expected` shards each (in order), bounded. */
async function untilShards(services: Service[], expected: number[], what: string): Promise<void> {
  await waitUntil(
    async () => {
      const owned = await Promise.all(services.map(shardsOf));
      return owned.every((n, i) => n === expected[i]);
    },
    SETTLE_MS,
    what,
  );
}

async function participant(t: Test, behavior: Parameters<typeof startParticipant>[0] = null) {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

/** A participant that answers every first delivery of phase two with silence: the decision is out, not delivered. */
const holdsFirstDelivery = (m: { action: string; txId: string }, p: TestParticipant) =>
  m.action !== 'prepare' && p.count(m.action as 'commit' | 'abort', m.txId) === 1 ? ('hang' as const) : undefined;

/** Every message a participant got for `txId`, in order. */
const actions = (p: TestParticipant, txId: string) => p.received.filter((m) => m.txId === txId).map((m) => m.action);

t.test('every instance serves every call: forwarded to the owner, read from the store', async (t) => {
  const { all } = await instances(t, 2);
  const [a, b] = all.map((i) => i.service) as [Service, Service];
  await untilShards([a, b], [16, 16], 'the shards shared evenly');
  const orders = await participant(t);
  const payments = await participant(t);

  const begun = await json(`${a.url}/v1/transactions`, 'POST', { participants: [] });
  t.equal(begun.status, 201);
  const id = begun.body.id as string;
  // Enlisted and committed through the instance that does not own it.
  for (const [name, p] of [
    ['orders', orders],
    ['payments', payments],
  ] as const) {
    const enlisted = await json(`${b.url}/v1/transactions/${id}/participants`, 'POST', { name, url: p.url });
    t.equal(enlisted.status, 201, `${name} enlisted through the other instance`);
  }
  const committed = await json(`${b.url}/v1/transactions/${id}/commit`, 'POST');
  t.equal(committed.status, 200, JSON.stringify(committed.body));
  t.equal(committed.body.outcome, 'commit');
  t.same([orders.states.get(id), payments.states.get(id)], ['committed', 'committed']);
  for (const s of [a, b]) {
    t.equal((await json(`${s.url}/v1/transactions/${id}`)).body.state, 'committed', 'read from either instance');
    t.same((await json(`${s.url}/v1/transactions/${id}/outcome`)).body, { outcome: 'commit' });
  }
  t.match(
    await (await fetch(`${b.url}/metrics`)).text(),
    /commitd_cluster_forwarded_calls_total\{result="answered"\} [1-9]/,
  );

  // The inquiry about a transaction the owner holds undecided in memory is
  // the owner's to answer, never a presumed abort from another instance.
  const slow = await participant(t, (m) =>
    m.action === 'prepare' ? { status: 200, body: { vote: 'yes' }, delayMs: 1500 } : undefined,
  );
  const pending = await json(`${a.url}/v1/transactions`, 'POST', { participants: [{ name: 'slow', url: slow.url }] });
  const pendingId = pending.body.id as string;
  const committing = json(`${a.url}/v1/transactions/${pendingId}/commit`, 'POST');
  await slow.waitFor(() => slow.count('prepare', pendingId) === 1);
  t.same((await json(`${b.url}/v1/transactions/${pendingId}/outcome`)).body, { outcome: 'pending' });
  t.equal((await committing).status, 200);
  t.same((await json(`${b.url}/v1/transactions/${pendingId}/outcome`)).body, { outcome: 'commit' });
});

t.test(
  'SIGKILL of the owner: the other instance finishes what it left decided and aborts what it left undecided',
  async (t) => {
    const { all } = await instances(t, 2);
    const [a, b] = all.map((i) => i.service) as [Service, Service];
    await untilShards([a, b], [16, 16], 'the shards shared evenly');
    const held = await participant(t, holdsFirstDelivery);
    const other = await participant(t);
    const stuck = await participant(t, (m) => (m.action === 'prepare' ? 'hang' : undefined));

    // Decided commit, delivered to `other`, held by `held`.
    const decided = await json(`${a.url}/v1/transactions`, 'POST', {
      participants: [
        { name: 'held', url: held.url },
        { name: 'other', url: other.url },
      ],
    });
    const decidedId = decided.body.id as string;
    void json(`${a.url}/v1/transactions/${decidedId}/commit`, 'POST').catch(() => {});
    await held.waitFor(() => held.count('commit', decidedId) === 1);
    // Undecided: one vote never comes.
    const undecided = await json(`${a.url}/v1/transactions`, 'POST', {
      participants: [
        { name: 'other', url: other.url },
        { name: 'stuck', url: stuck.url },
      ],
    });
    const undecidedId = undecided.body.id as string;
    void json(`${a.url}/v1/transactions/${undecidedId}/commit`, 'POST').catch(() => {});
    await waitUntil(() => stuck.count('prepare', undecidedId) === 1 && other.states.get(undecidedId) === 'prepared');

    const killedAt = Date.now();
    await a.kill('SIGKILL');
    await waitUntil(
      () => held.states.get(decidedId) === 'committed' && other.states.get(undecidedId) === 'aborted',
      SETTLE_MS,
      'the survivor to finish both transactions',
    );
    t.comment(`resolved ${Date.now() - killedAt} ms after the kill`);
    t.same(actions(held, decidedId), ['prepare', 'commit', 'commit'], 'the decision resent by the new owner');
    t.same(
      actions(other, decidedId).filter((a) => a !== 'commit'),
      ['prepare'],
      'the other participant of the decided one only ever heard commit',
    );
    t.equal(other.states.get(decidedId), 'committed');
    t.notOk(actions(other, undecidedId).includes('commit'), 'the undecided one was never committed anywhere');
    t.equal((await json(`${b.url}/v1/transactions/${decidedId}`)).body.outcome, 'commit');
    t.equal((await json(`${b.url}/v1/transactions/${undecidedId}`)).body.outcome, 'abort');
    await untilShards([b], [32], 'the survivor to own every shard');
  },
);

t.test('SIGSTOP past the silence bound: taken over; woken up, the stale instance changes nothing', async (t) => {
  const { all } = await instances(t, 2);
  const [a, b] = all.map((i) => i.service) as [Service, Service];
  await untilShards([a, b], [16, 16], 'the shards shared evenly');
  const orders = await participant(t);
  const payments = await participant(t);

  // Prepared on A with a short deadline, then A is paused: while it sleeps,
  // the deadline passes in A's memory. The client commits through B, which
  // has taken the transaction over. When A wakes up it must not abort it.
  const begun = await json(`${a.url}/v1/transactions`, 'POST', {
    timeoutMs: 4000,
    participants: [
      { name: 'orders', url: orders.url },
      { name: 'payments', url: payments.url },
    ],
  });
  const id = begun.body.id as string;
  t.equal((await json(`${a.url}/v1/transactions/${id}/prepare`, 'POST')).status, 200);

  const pausedAt = Date.now();
  a.child.kill('SIGSTOP');
  t.teardown(() => a.child.kill('SIGCONT'));
  await untilShards([b], [32], 'B to take every shard of the paused A');
  t.comment(`taken over ${Date.now() - pausedAt} ms after the pause`);
  const committed = await json(`${b.url}/v1/transactions/${id}/commit`, 'POST');
  t.equal(committed.status, 200, JSON.stringify(committed.body));
  t.same([orders.states.get(id), payments.states.get(id)], ['committed', 'committed']);

  // Past A's deadline for the transaction, then wake A up.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, pausedAt + 4500 - Date.now())));
  const beforeWaking = a.output().length;
  a.child.kill('SIGCONT');
  await untilShards([a, b], [16, 16], 'the woken instance to get its share back');
  // What the woken instance says: that it was the one not running, and what
  // it lost, as a warning; never that its peer, which ran all along, is gone.
  const afterWaking = a
    .output()
    .slice(beforeWaking)
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg?: string; err?: { message?: string } });
  const stalled = afterWaking.filter((l) => /this instance did not run for \d+ ms/.test(l.msg ?? ''));
  t.equal(stalled.length, 1, 'one line says the instance itself did not run');
  t.equal(stalled[0]?.level, 40, 'a warning');
  t.match(stalled[0]?.msg, /the leases of 16 of its shards ran out meanwhile/, 'with the shards it lost');
  t.same(
    afterWaking.filter((l) => /is gone/.test(`${l.msg} ${l.err?.message}`)).map((l) => l.err?.message ?? l.msg),
    [],
    'no peer is said to be gone',
  );
  for (const p of [orders, payments]) {
    t.notOk(actions(p, id).includes('abort'), 'the stale owner never sent an abort');
    t.equal(p.states.get(id), 'committed');
  }
  t.equal((await json(`${a.url}/v1/transactions/${id}`)).body.outcome, 'commit', 'the woken instance reads the commit');
  t.match(await (await fetch(`${a.url}/metrics`)).text(), /commitd_cluster_shard_changes_total\{change="lost"\} [1-9]/);
});

t.test(
  'woken before its leases ran out by its own clock, taken over all the same: its begins go to the other instance',
  async (t) => {
    const { all } = await instances(t, 2);
    const [a, b] = all.map((i) => i.service) as [Service, Service];
    await untilShards([a, b], [16, 16], 'the shards shared evenly');
    const orders = await participant(t);
    a.child.kill('SIGSTOP');
    t.teardown(() => a.child.kill('SIGCONT'));
    await untilShards([b], [32], 'B to take every shard of the paused A');
    // Woken at once: past the silence bound (B took its shards), well within
    // what A still takes for its own leases. It knows it did not run for a
    // while, so it begins nothing in shards it only believes are its own (the
    // fence would refuse the writes, and the caller hear 503): the begins go to B.
    a.child.kill('SIGCONT');
    const begins = await Promise.all(
      [0, 1, 2, 3].map(() =>
        json(`${a.url}/v1/transactions`, 'POST', { participants: [{ name: 'orders', url: orders.url }], commit: true }),
      ),
    );
    t.same(
      begins.map((r) => r.status),
      [200, 200, 200, 200],
      `begins sent to the woken instance commit: ${JSON.stringify(begins.map((r) => r.body?.detail ?? r.body?.state))}`,
    );
    for (const r of begins) t.equal(orders.states.get(r.body?.id), 'committed');
    await untilShards([a, b], [16, 16], 'the woken instance to get its share back');
  },
);

t.test('SIGTERM hands the shards over at once; a newcomer takes its share', async (t) => {
  const { all, start } = await instances(t, 2);
  const [a, b] = all.map((i) => i.service) as [Service, Service];
  await untilShards([a, b], [16, 16], 'the shards shared evenly');
  const held = await participant(t, holdsFirstDelivery);
  const begun = await json(`${a.url}/v1/transactions`, 'POST', { participants: [{ name: 'held', url: held.url }] });
  const id = begun.body.id as string;
  void json(`${a.url}/v1/transactions/${id}/commit`, 'POST').catch(() => {});
  await held.waitFor(() => held.count('commit', id) === 1);

  const stoppedAt = Date.now();
  const exited = a.kill('SIGTERM');
  await untilShards([b], [32], 'B to own every shard');
  t.comment(`handed over ${Date.now() - stoppedAt} ms after SIGTERM`);
  t.equal(await exited, 0, 'a clean stop');
  await held.waitFor(() => held.states.get(id) === 'committed', SETTLE_MS);

  const c = await start(await freePort());
  await untilShards([b, c], [16, 16], 'the newcomer to take half');
  const plain = await participant(t);
  const again = await json(`${c.url}/v1/transactions`, 'POST', {
    participants: [{ name: 'plain', url: plain.url }],
    commit: true,
  });
  t.equal(again.status, 200, 'the newcomer begins and commits in a shard of its own');
  t.equal(plain.states.get(again.body.id), 'committed');
});

t.test(
  'cut off from PostgreSQL alone: its lease runs out, the other takes over, and its writes arriving late change nothing',
  async (t) => {
    const { all, start } = await instances(t, 1);
    const b = (all[0] as Instance).service;
    // A reaches the store through a proxy the test can cut; B and the probes do not.
    const proxy = await startTcpProxy(cluster().port);
    t.teardown(() => proxy.close());
    const a = await start(await freePort(), cluster().url().replace(`:${cluster().port}/`, `:${proxy.port}/`));
    await untilShards([a, b], [16, 16], 'the shards shared evenly');
    const held = await participant(t, holdsFirstDelivery);
    const other = await participant(t);
    const stuck = await participant(t, (m) => (m.action === 'prepare' ? 'hang' : undefined));
    const slowYes = await participant(t, (m) =>
      m.action === 'prepare' ? { status: 200, body: { vote: 'yes' }, delayMs: 700 } : undefined,
    );
    const begin = async (names: Array<[string, TestParticipant]>) => {
      const begun = await json(`${a.url}/v1/transactions`, 'POST', {
        participants: names.map(([name, p]) => ({ name, url: p.url })),
      });
      t.equal(begun.status, 201);
      const id = begun.body.id as string;
      void json(`${a.url}/v1/transactions/${id}/commit`, 'POST').catch(() => {});
      return id;
    };

    // Decided commit, delivered to `other`, held by `held`.
    const decidedId = await begin([
      ['held', held],
      ['other', other],
    ]);
    await held.waitFor(() => held.count('commit', decidedId) === 1);
    // Undecided: one vote never comes.
    const undecidedId = await begin([
      ['other', other],
      ['stuck', stuck],
    ]);
    await waitUntil(() => stuck.count('prepare', undecidedId) === 1 && other.states.get(undecidedId) === 'prepared');
    // Both votes yes, the last one after the cut: A writes its commit
    // decision into the cut, and that write reaches the store only after B
    // has taken the transaction over (and aborted it, undecided as the store
    // has it).
    const lateId = await begin([
      ['other', other],
      ['slow', slowYes],
    ]);
    await slowYes.waitFor(() => slowYes.count('prepare', lateId) === 1);
    const cutAt = Date.now();
    proxy.hold();

    await untilShards([b], [32], "B to take every shard once A's leases ran out");
    t.comment(`taken over ${Date.now() - cutAt} ms after the cut (lease ${CLUSTER_SETTINGS.COMMITD_LEASE_MS} ms)`);
    // A answered every probe all along: B took the shards because A's
    // heartbeat and leases in the store ran out.
    t.match(
      await (await fetch(`${b.url}/metrics`)).text(),
      /commitd_cluster_shard_changes_total\{change="(owner-gone|lease-expired)"\} 16/,
      "B took A's 16 shards",
    );
    await waitUntil(
      () =>
        held.states.get(decidedId) === 'committed' &&
        other.states.get(undecidedId) === 'aborted' &&
        other.states.get(lateId) === 'aborted',
      SETTLE_MS,
      'B to finish the three transactions A left',
    );

    // The path heals: A's held statements (its commit decision among them) reach the store now.
    proxy.release();
    await untilShards([a, b], [16, 16], 'A to come back and get its share');
    await slowYes.waitFor(() => slowYes.states.get(lateId) === 'aborted', SETTLE_MS);
    for (const p of [other, slowYes]) {
      t.notOk(actions(p, lateId).includes('commit'), 'the decision written into the cut never took effect');
    }
    t.notOk(actions(other, undecidedId).includes('commit'), 'the undecided one was never committed anywhere');
    t.equal(held.states.get(decidedId), 'committed');
    t.match(
      await (await fetch(`${a.url}/metrics`)).text(),
      /commitd_cluster_shard_changes_total\{change="lost"\} [1-9]/,
    );
    for (const s of [a, b]) {
      t.equal((await json(`${s.url}/v1/transactions/${lateId}`)).body.outcome, 'abort', 'the store holds the abort');
      t.equal((await json(`${s.url}/v1/transactions/${decidedId}`)).body.outcome, 'commit');
    }
  },
);
