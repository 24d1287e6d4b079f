// Two commitd processes with tokens on one private PostgreSQL cluster, as a
// production cluster runs (issue 24): idempotency keys, scoped to the token
// that used them, sent to either instance (and to both at once); the typed
// client's run(); and every operator action (resolve a heuristic, retry,
// abort) and history read sent to the instance that does not own the
// transaction, while its owner drives it and after it finished.

import pg from 'pg';
import t, { type Test } from 'tap';
import { CommitdClient } from '../../src/client/index.js';
import { tempDir } from '../support/harness.js';
import { startParticipant, waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);

const ADMIN = 'admin-token-0123456789abcdef';
const ALICE = 'alice-client-token-0123456789';
const BOB = 'bob-client-token-0123456789';

const SETTINGS = {
  COMMITD_LEASE_MS: '3000',
  COMMITD_PEER_PROBE_INTERVAL_MS: '100',
  COMMITD_PEER_SILENCE_MS: '1000',
  COMMITD_TOKENS: `admin:${ADMIN},client:${ALICE},client:${BOB}`,
};
const SETTLE_MS = 15_000;

let schemas = 0;

/** Two instances on a schema of their own, each owning half the shards. */
async function pair(t: Test, env: Record<string, string> = {}): Promise<{ a: Service; b: Service; schema: string }> {
  const schema = `tokens_${++schemas}_${Math.random().toString(36).slice(2, 8)}`;
  const services: Service[] = [];
  for (let i = 0; i < 2; i++) {
    const service = await startService(tempDir('commitd-tokens-'), {
      ...SETTINGS,
      COMMITD_STORE_URL: cluster().url(),
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(await freePort()),
      ...env,
    });
    t.teardown(() => service.kill('SIGKILL'));
    services.push(service);
  }
  const [a, b] = services as [Service, Service];
  await waitUntil(
    async () => {
      const owned = await Promise.all(
        [a, b].map(async (s) => {
          const { body } = await call(s, 'GET', '/v1/cluster', ADMIN);
          return body.instances.find((i: { self: boolean }) => i.self)?.shards ?? 0;
        }),
      );
      return owned.every((n) => n === 16);
    },
    SETTLE_MS,
    'the shards shared evenly',
  );
  return { a, b, schema };
}

async function call(
  service: Service,
  method: 'GET' | 'POST',
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${service.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function participant(t: Test, behavior: Parameters<typeof startParticipant>[0] = null) {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

/** The rows of the store that hold a key ending in `key` (any scope, any separator). */
async function storedWithKey(schema: string, key: string): Promise<number> {
  const client = new pg.Client({ connectionString: cluster().url() });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM "${schema}".transactions WHERE right(idempotency_key, $2) = $1`,
      [key, key.length],
    );
    return Number(rows[0]?.n);
  } finally {
    await client.end();
  }
}

t.test('idempotency keys on the PostgreSQL store with tokens, at either instance', async (t) => {
  const { a, b, schema } = await pair(t);
  const begun = await call(a, 'POST', '/v1/transactions', ALICE, { idempotencyKey: 'order-1' });
  t.equal(begun.status, 201, JSON.stringify(begun.body));
  t.equal(begun.body.idempotencyKey, 'order-1', 'shown as the client sent it');
  for (const s of [a, b]) {
    const again = await call(s, 'POST', '/v1/transactions', ALICE, { idempotencyKey: 'order-1' });
    t.equal(again.status, 200, 'the retry finds it, at either instance');
    t.equal(again.body.id, begun.body.id);
  }
  const bobs = await call(b, 'POST', '/v1/transactions', BOB, { idempotencyKey: 'order-1' });
  t.equal(bobs.status, 201, "another token's key is another key");
  t.not(bobs.body.id, begun.body.id);
  const different = await call(b, 'POST', '/v1/transactions', ALICE, { idempotencyKey: 'order-1', metadata: { x: 1 } });
  t.equal(different.status, 409, 'the same key for a different request is a conflict');

  // The same key sent to both instances at once: one transaction, whatever
  // instance each call reached.
  for (let round = 0; round < 10; round++) {
    const key = `race-${round}`;
    const answers = await Promise.all(
      [a, b].map((s) => call(s, 'POST', '/v1/transactions', ALICE, { idempotencyKey: key, metadata: { round } })),
    );
    t.same(
      answers.map((x) => x.status).sort(),
      [200, 201],
      `round ${round}: one created, one found (${JSON.stringify(answers.map((x) => x.body))})`,
    );
    t.equal(answers[0]?.body.id, answers[1]?.body.id, `round ${round}: one transaction`);
    t.equal(await storedWithKey(schema, key), 1, `round ${round}: one row in the store`);
  }
});

t.test("the typed client's run() against the PostgreSQL store with tokens", async (t) => {
  const { a, b } = await pair(t);
  const yes = await participant(t);
  for (const s of [a, b]) {
    const client = new CommitdClient({ url: s.url, token: ALICE });
    t.teardown(() => client.close());
    const tx = await client.run({ participants: [{ name: 'p', url: yes.url }] });
    t.equal(tx.state, 'committed');
    t.equal(yes.states.get(tx.id), 'committed');
  }
});

/** A heuristic abort from `p0`; `p1` answers phase two with 503 while `held` says so. */
async function heuristicPair(t: Test) {
  let held = true;
  const p0 = await participant(t, (m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  const p1 = await participant(t, (m) => (m.action === 'commit' && held ? { status: 503 } : undefined));
  return {
    participants: [
      { name: 'p0', url: p0.url },
      { name: 'p1', url: p1.url },
    ],
    release: () => {
      held = false;
    },
    p1,
  };
}

const historyOf = async (s: Service, id: string) => {
  const { status, body } = await call(s, 'GET', `/v1/transactions/${id}/history`, ADMIN);
  if (status !== 200) throw new Error(`history: ${status} ${JSON.stringify(body)}`);
  return body.entries as Array<{ type: string; participant?: string; note?: string; action?: string }>;
};

t.test(
  'resolve at the instance that does not own the transaction: applied once, answered, in the history',
  async (t) => {
    const { a, b } = await pair(t);
    const h = await heuristicPair(t);
    const begun = await call(a, 'POST', '/v1/transactions', ALICE, { participants: h.participants });
    const id = begun.body.id as string;
    const committed = await call(a, 'POST', `/v1/transactions/${id}/commit`, ALICE);
    t.equal(committed.status, 202, 'decided; p1 still owed its commit');

    // While its owner (a) drives it: resolved through b.
    await waitUntil(async () => (await call(b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.state === 'committing');
    const resolved = await call(b, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: 'refunded by hand' });
    t.equal(resolved.status, 200, `resolved, and told so: ${JSON.stringify(resolved.body)}`);
    t.match(resolved.body.participants[0], {
      name: 'p0',
      heuristic: 'abort',
      heuristicResolved: { note: 'refunded by hand' },
    });
    const twice = await call(b, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: 'again' });
    t.equal(twice.status, 409, 'a second resolve finds nothing to resolve');
    t.equal(twice.body.type?.endsWith('nothing-to-resolve'), true, JSON.stringify(twice.body));
    for (const s of [a, b]) {
      const entries = await historyOf(s, id);
      t.same(
        entries.filter((e) => e.type === 'heuristic-resolved').map((e) => [e.participant, e.note]),
        [['p0', 'refunded by hand']],
        `the history read at ${s === a ? 'the owner' : 'the other'} holds the resolution once`,
      );
    }

    // Retry now through b: the owner resends, and says so in the history.
    const retried = await call(b, 'POST', `/v1/transactions/${id}/retry`, ADMIN);
    t.equal(retried.status, 202, JSON.stringify(retried.body));
    await waitUntil(async () => (await historyOf(b, id)).some((e) => e.type === 'operator-retry'), 5_000, 'the retry');
    h.release();
    await waitUntil(async () => (await call(b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.state === 'committed');
    t.same(await historyOf(a, id), await historyOf(b, id), 'the same whole history at either instance');

    // After it finished: another one, resolved through b.
    const h2 = await heuristicPair(t);
    h2.release();
    const done = await call(a, 'POST', '/v1/transactions', ALICE, { participants: h2.participants, commit: true });
    t.equal(done.status, 200, JSON.stringify(done.body));
    const doneId = done.body.id as string;
    await waitUntil(async () => (await call(b, 'GET', `/v1/transactions/${doneId}`, ADMIN)).body.state === 'committed');
    const late = await call(b, 'POST', `/v1/transactions/${doneId}/resolve`, ADMIN, {
      note: 'late',
      participant: 'p0',
    });
    t.equal(late.status, 200, JSON.stringify(late.body));
    t.match(late.body.participants[0], { heuristicResolved: { note: 'late' } });
    for (const s of [a, b]) {
      t.same(
        (await historyOf(s, doneId)).filter((e) => e.type === 'heuristic-resolved').map((e) => e.note),
        ['late'],
        `the finished one's resolution in the history at ${s === a ? 'the owner' : 'the other'}`,
      );
    }
    const unresolved = await call(b, 'GET', '/v1/transactions?heuristic=unresolved', ADMIN);
    t.same(unresolved.body.transactions, [], 'nothing left unresolved');
  },
);

t.test(
  "an operator's abort through the other instance, and the whole history of a live transaction there",
  async (t) => {
    // Lazy records wait long: what the owner holds unwritten is only in its memory.
    const { a, b } = await pair(t, { COMMITD_LAZY_FLUSH_DELAY_MS: '5000' });
    const yes = await participant(t);
    const begun = await call(a, 'POST', '/v1/transactions', ALICE, { participants: [{ name: 'p', url: yes.url }] });
    const id = begun.body.id as string;
    const enlisted = await call(b, 'POST', `/v1/transactions/${id}/participants`, ALICE, { name: 'q', url: yes.url });
    t.equal(enlisted.status, 201);
    const atOwner = await historyOf(a, id);
    t.same(await historyOf(b, id), atOwner, 'the history read at the other instance is the owner’s, whole');
    const aborted = await call(b, 'POST', `/v1/transactions/${id}/abort`, ADMIN);
    t.equal(aborted.status, 200, JSON.stringify(aborted.body));
    t.equal(aborted.body.outcome, 'abort');
    const entries = await historyOf(b, id);
    t.ok(
      entries.some((e) => e.type === 'requested' && e.action === 'abort'),
      `the operator's abort is in the history read at the other instance: ${JSON.stringify(entries)}`,
    );
    t.same(entries, await historyOf(a, id), 'and it is the same at the owner');
  },
);
