// Not part of npm test: `npm run probe:trust`. Two of its cases fail here
// (an operator's abort sent to both instances at once: a history read right
// after the transaction finished misses entries; and under SIGSTOP with 6
// rounds an expectation of the probe itself), so it runs as a probe until
// they are understood and fixed (issue 24, item 4 stays open).
// A probe of issue 24's fixes for items 1 and 4 (idempotency keys with
// tokens on the PostgreSQL store; operator actions at a non-owner), as an
// adversary would: two instances with tokens on a private PostgreSQL, the
// same key sent to both at once while one is SIGKILLed or paused, resolves
// sent twice at once to both instances, resolves after the owner was
// killed, and calls that try to cross from one token or role to another.

import pg from 'pg';
import t, { type Test } from 'tap';
import { tempDir } from '../support/harness.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);

const ADMIN = 'admin-token-0123456789abcdef';
const ALICE = 'alice-client-token-0123456789';
const BOB = 'bob-client-token-0123456789';
const PARTY = 'participant-token-0123456789';

const SETTINGS = {
  COMMITD_LEASE_MS: '3000',
  COMMITD_PEER_PROBE_INTERVAL_MS: '100',
  COMMITD_PEER_SILENCE_MS: '1000',
  COMMITD_TOKENS: `admin:${ADMIN},client:${ALICE},client:${BOB},participant:${PARTY}`,
};
const SETTLE_MS = 20_000;
/** How long a call is retried while it answers 503 (a takeover takes about 3 s). */
const RETRY_503_MS = 20_000;
/** Rounds per probe: few by default (the suite stays fast); COMMITD_PROBE_ROUNDS=10 for a longer probe. */
const ROUNDS = Number(process.env.COMMITD_PROBE_ROUNDS ?? 2);

let schemas = 0;

interface Pair {
  a: Service;
  b: Service;
  schema: string;
  /** Starts instance `a` again (after a kill) on the same schema. */
  restartA(): Promise<Service>;
}

async function startOne(t: Test, schema: string, env: Record<string, string>): Promise<Service> {
  const service = await startService(tempDir('commitd-probe-'), {
    ...SETTINGS,
    COMMITD_STORE_URL: cluster().url(),
    COMMITD_STORE_SCHEMA: schema,
    COMMITD_PORT: String(await freePort()),
    ...env,
  });
  t.teardown(async () => {
    service.child.kill('SIGCONT');
    await service.kill('SIGKILL');
  });
  return service;
}

async function ownedShards(s: Service): Promise<number> {
  const { body } = await call(s, 'GET', '/v1/cluster', ADMIN);
  return body.instances.find((i: { self: boolean }) => i.self)?.shards ?? 0;
}

async function settled(services: Service[]): Promise<void> {
  await waitUntil(
    async () => (await Promise.all(services.map(ownedShards).map((p) => p.catch(() => 0)))).every((n) => n === 16),
    SETTLE_MS,
    'the shards shared evenly',
  );
}

async function pair(t: Test, env: Record<string, string> = {}): Promise<Pair> {
  const schema = `probe_${++schemas}_${Math.random().toString(36).slice(2, 8)}`;
  const a = await startOne(t, schema, env);
  const b = await startOne(t, schema, env);
  await settled([a, b]);
  const p: Pair = {
    a,
    b,
    schema,
    async restartA() {
      p.a = await startOne(t, schema, env);
      await settled([p.a, p.b]);
      return p.a;
    },
  };
  return p;
}

let shared: Promise<Pair> | null = null;
/** One pair for the cases that kill nothing (instances start slowly on a loaded machine); stopped with the file. */
function sharedPair(): Promise<Pair> {
  shared ??= pair(t);
  return shared;
}

async function call(
  service: Service,
  method: 'GET' | 'POST',
  path: string,
  token: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${service.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** The call, again while it answers 503 or cannot connect (bounded). */
async function callRetrying(
  service: Service,
  method: 'GET' | 'POST',
  path: string,
  token: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const deadline = Date.now() + RETRY_503_MS;
  for (;;) {
    const answer = await call(service, method, path, token, body).catch((e: Error) => ({
      status: 0,
      body: String(e),
    }));
    if ((answer.status !== 503 && answer.status !== 0) || Date.now() > deadline) return answer;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function participant(t: Test, behavior: Parameters<typeof startParticipant>[0] = null) {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

/** The transactions a participant was asked to prepare. */
const preparedIds = (p: TestParticipant) => [
  ...new Set(p.received.filter((m) => m.action === 'prepare').map((m) => m.txId)),
];

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

const historyOf = async (s: Service, id: string) => {
  const { status, body } = await callRetrying(s, 'GET', `/v1/transactions/${id}/history`, ADMIN);
  if (status !== 200) throw new Error(`history: ${status} ${JSON.stringify(body)}`);
  return body.entries as Array<{ type: string; participant?: string; note?: string; action?: string }>;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the same key at both instances while one is SIGKILLed: one transaction, prepared once', async (t) => {
  const p = await pair(t);
  const rounds = ROUNDS;
  for (let round = 0; round < rounds; round++) {
    const key = `kill-${round}-${Math.random().toString(36).slice(2, 8)}`;
    const yes = await participant(t);
    const body = { idempotencyKey: key, participants: [{ name: 'p', url: yes.url }], commit: true };
    const { a, b } = p;
    const sent = [a, b].map((s) => call(s, 'POST', '/v1/transactions', ALICE, body).catch(() => null));
    await sleep(round * 7);
    await a.kill('SIGKILL');
    await Promise.all(sent);
    // Undecided when its owner died, it may be aborted by the takeover
    // (presumed abort): then the key answers 409 with that one transaction.
    const final = await callRetrying(b, 'POST', '/v1/transactions', ALICE, body);
    const tx = final.status === 409 ? final.body?.transaction : final.body;
    t.ok(
      (final.status === 200 && tx?.state === 'committed') || (final.status === 409 && tx?.state === 'aborted'),
      `round ${round}: the key's transaction, finished: ${final.status} ${JSON.stringify(final.body)}`,
    );
    const ids = preparedIds(yes);
    t.same(
      ids,
      tx?.state === 'committed' ? [tx.id] : ids.length === 0 ? [] : [tx?.id],
      `round ${round}: at most the key's transaction prepared`,
    );
    t.equal(await storedWithKey(p.schema, key), 1, `round ${round}: one row holds the key`);
    const restarted = await p.restartA();
    const atA = await callRetrying(restarted, 'POST', '/v1/transactions', ALICE, body);
    t.equal(
      (atA.status === 409 ? atA.body?.transaction : atA.body)?.id,
      tx?.id,
      `round ${round}: the restarted instance finds the same one`,
    );
  }
});

t.test('the same key at both instances while one is paused (SIGSTOP): one transaction', async (t) => {
  const p = await pair(t);
  const rounds = ROUNDS;
  for (let round = 0; round < rounds; round++) {
    const key = `stop-${round}-${Math.random().toString(36).slice(2, 8)}`;
    const yes = await participant(t);
    const body = { idempotencyKey: key, participants: [{ name: 'p', url: yes.url }], commit: true };
    const { a, b } = p;
    const atA = call(a, 'POST', '/v1/transactions', ALICE, body).catch((e: Error) => ({ status: 0, body: String(e) }));
    const atB = call(b, 'POST', '/v1/transactions', ALICE, body).catch((e: Error) => ({ status: 0, body: String(e) }));
    await sleep(round * 5);
    a.child.kill('SIGSTOP');
    await atB;
    const final = await callRetrying(b, 'POST', '/v1/transactions', ALICE, body);
    t.equal(final.status, 200, `round ${round}: answered at b while a sleeps: ${JSON.stringify(final.body)}`);
    await sleep(2_000);
    a.child.kill('SIGCONT');
    const late = await atA;
    if (late.status === 200 || late.status === 201 || late.status === 202) {
      t.equal(late.body.id, final.body?.id, `round ${round}: the woken instance's answer names the same transaction`);
    }
    await settled([a, b]);
    const again = await callRetrying(a, 'POST', '/v1/transactions', ALICE, body);
    t.equal(again.body?.id, final.body?.id, `round ${round}: the woken instance finds the same one`);
    t.same(preparedIds(yes), [final.body?.id], `round ${round}: one transaction prepared`);
    t.equal(await storedWithKey(p.schema, key), 1, `round ${round}: one row holds the key`);
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
  };
}

t.test('resolve sent twice at once, once to each instance: applied once, one 200, one entry', async (t) => {
  const { a, b } = await sharedPair();
  const rounds = ROUNDS;
  for (let round = 0; round < rounds; round++) {
    const h = await heuristicPair(t);
    const finished = round % 2 === 1;
    if (finished) h.release();
    const begun = await call(a, 'POST', '/v1/transactions', ALICE, { participants: h.participants, commit: true });
    const id = begun.body.id as string;
    await waitUntil(async () => {
      const { body } = await call(b, 'GET', `/v1/transactions/${id}`, ADMIN);
      return body.participants?.[0]?.heuristic === 'abort' && (!finished || body.state === 'committed');
    });
    const answers = await Promise.all(
      [a, b].map((s) => call(s, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: `r${round}` })),
    );
    t.same(
      answers.map((x) => x.status).sort(),
      [200, 409],
      `round ${round} (${finished ? 'finished' : 'live'}): ${JSON.stringify(answers.map((x) => x.body))}`,
    );
    for (const s of [a, b]) {
      const entries = await historyOf(s, id);
      t.equal(
        entries.filter((e) => e.type === 'heuristic-resolved').length,
        1,
        `round ${round}: one heuristic-resolved entry at ${s === a ? 'a' : 'b'}`,
      );
    }
    h.release();
  }
});

t.test('resolve through the other instance after the owner was SIGKILLed: applied once, in the history', async (t) => {
  const p = await pair(t);
  const h = await heuristicPair(t);
  const begun = await call(p.a, 'POST', '/v1/transactions', ALICE, { participants: h.participants });
  const id = begun.body.id as string;
  t.equal((await call(p.a, 'POST', `/v1/transactions/${id}/commit`, ALICE)).status, 202);
  await waitUntil(
    async () => (await call(p.b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.participants?.[0]?.heuristic === 'abort',
  );
  await p.a.kill('SIGKILL');
  const resolved = await callRetrying(p.b, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: 'after kill' });
  t.equal(resolved.status, 200, JSON.stringify(resolved.body));
  h.release();
  await waitUntil(
    async () => (await callRetrying(p.b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.state === 'committed',
    RETRY_503_MS,
  );
  await p.restartA();
  for (const s of [p.a, p.b]) {
    const notes = (await historyOf(s, id)).filter((e) => e.type === 'heuristic-resolved').map((e) => e.note);
    t.same(notes, ['after kill'], `the resolution once in the history at ${s === p.a ? 'the restarted a' : 'b'}`);
  }
});

t.test('tokens and roles across instances: no call crosses from one token or role to another', async (t) => {
  const { a, b } = await sharedPair();
  const yes = await participant(t);
  const begun = await call(a, 'POST', '/v1/transactions', ALICE, {
    idempotencyKey: 'alice-order',
    participants: [{ name: 'p', url: yes.url }],
  });
  t.equal(begun.status, 201);
  const id = begun.body.id as string;
  let bobsId: string | null = null;
  for (const s of [a, b]) {
    for (const [token, role] of [
      [ALICE, 'client'],
      [PARTY, 'participant'],
    ] as const) {
      const resolve = await call(s, 'POST', `/v1/transactions/${id}/resolve`, token, { note: 'x' });
      t.equal(resolve.status, 403, `a ${role} token may not resolve, at ${s === a ? 'the owner' : 'the other'}`);
      const retry = await call(s, 'POST', `/v1/transactions/${id}/retry`, token);
      t.equal(retry.status, 403, `a ${role} token may not retry, at ${s === a ? 'the owner' : 'the other'}`);
      const history = await call(s, 'GET', `/v1/transactions/${id}/history`, token);
      t.equal(history.status, 403, `a ${role} token may not read the history, at ${s === a ? 'owner' : 'other'}`);
    }
    // A caller that claims to be a forwarded call is checked all the same.
    const spoofed = await call(
      s,
      'POST',
      `/v1/transactions/${id}/resolve`,
      ALICE,
      { note: 'x' },
      {
        'commitd-forwarded-by': 'someone',
      },
    );
    t.equal(spoofed.status, 403, 'a forged forwarded header does not skip the role check');
    const noToken = await fetch(`${s.url}/v1/transactions/${id}/history`, {
      headers: { 'commitd-forwarded-by': 'someone' },
    });
    t.equal(noToken.status, 401, 'nor the token check');
    // Bob with Alice's key: another key, never Alice's transaction.
    const bobs = await call(s, 'POST', '/v1/transactions', BOB, {
      idempotencyKey: 'alice-order',
      participants: [{ name: 'p', url: yes.url }],
    });
    // First his own new one, then (at the other instance) his retry finds it.
    t.equal(bobs.status, bobsId === null ? 201 : 200, `bob's same key at ${s === a ? 'a' : 'b'} is his own`);
    t.not(bobs.body.id, id, "never Alice's transaction");
    if (bobsId !== null) t.equal(bobs.body.id, bobsId);
    bobsId = bobs.body.id;
    // Keys that try to forge the join of scope and key.
    for (const forged of ['x\u001falice-order', '\u0000alice-order', 'a\u007f', 'a\u001f']) {
      const answer = await call(s, 'POST', '/v1/transactions', BOB, { idempotencyKey: forged });
      t.equal(answer.status, 400, `a key with a control character is refused: ${JSON.stringify(forged)}`);
    }
  }
});

t.test('two different keys of one token are never one transaction on the PostgreSQL store', async (t) => {
  // A lone surrogate is valid in a JSON string; PostgreSQL (UTF-8) stores it
  // as U+FFFD, where it met the key spelled with U+FFFD, which the client sent
  // as another key: the second begin answered 200 with the first's id. Such
  // a key is now refused.
  const { a } = await sharedPair();
  const yes = await participant(t);
  const body = (key: string) => ({ idempotencyKey: key, participants: [{ name: 'p', url: yes.url }] });
  const lone = await call(a, 'POST', '/v1/transactions', ALICE, body('order-\ud800'));
  t.equal(lone.status, 400, `a key that UTF-8 cannot hold is refused: ${JSON.stringify(lone.body)}`);
  const replacement = await call(a, 'POST', '/v1/transactions', ALICE, body('order-\ufffd'));
  t.equal(replacement.status, 201, `the key spelled with U+FFFD is its own: ${JSON.stringify(replacement.body)}`);
  t.equal(replacement.body?.idempotencyKey, 'order-\ufffd');
});

t.test(
  'the same key at both instances across a hand-over (SIGTERM) and a PostgreSQL restart: one transaction',
  async (t) => {
    const p = await pair(t);
    for (const disturb of ['sigterm', 'postgres-restart'] as const) {
      const key = `${disturb}-${Math.random().toString(36).slice(2, 8)}`;
      const yes = await participant(t);
      const body = { idempotencyKey: key, participants: [{ name: 'p', url: yes.url }], commit: true };
      const { a, b } = p;
      const sent = [a, b].map((s) =>
        call(s, 'POST', '/v1/transactions', ALICE, body).catch((e: Error) => ({ status: 0, body: String(e) })),
      );
      const disturbed = disturb === 'sigterm' ? a.kill('SIGTERM') : cluster().restart();
      const first = await Promise.all(sent);
      await disturbed;
      // Undecided when the store went away, it may be aborted (its owner's
      // leases lapse): then the key's transaction answers 409 aborted, never
      // another transaction, and never abort after a commit was told.
      const final = await callRetrying(b, 'POST', '/v1/transactions', ALICE, body);
      const tx = final.status === 409 ? final.body?.transaction : final.body;
      t.ok(
        (final.status === 200 && tx?.state === 'committed') || (final.status === 409 && tx?.state === 'aborted'),
        `${disturb}: the key's transaction, finished: ${final.status} ${JSON.stringify(final.body)}`,
      );
      for (const answer of first) {
        if (answer.status >= 200 && answer.status < 300) {
          t.equal(answer.body.id, tx?.id, `${disturb}: every answer names the same transaction`);
          if (answer.body.state === 'committed') t.equal(tx?.state, 'committed', `${disturb}: a told commit stands`);
        }
      }
      t.same(preparedIds(yes), [tx?.id], `${disturb}: one transaction prepared`);
      t.equal(await storedWithKey(p.schema, key), 1, `${disturb}: one row holds the key`);
      if (disturb === 'sigterm') await p.restartA();
      else await settled([p.a, p.b]);
      const atA = await callRetrying(p.a, 'POST', '/v1/transactions', ALICE, body);
      t.equal((atA.status === 409 ? atA.body?.transaction : atA.body)?.id, tx?.id, `${disturb}: found at a too`);
    }
  },
);

t.test('resolve through the other instance while the owner is paused (SIGSTOP): applied once', async (t) => {
  const { a, b } = await pair(t);
  const h = await heuristicPair(t);
  const begun = await call(a, 'POST', '/v1/transactions', ALICE, { participants: h.participants });
  const id = begun.body.id as string;
  t.equal((await call(a, 'POST', `/v1/transactions/${id}/commit`, ALICE)).status, 202);
  await waitUntil(
    async () => (await call(b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.participants?.[0]?.heuristic === 'abort',
  );
  a.child.kill('SIGSTOP');
  // The first call goes to the sleeping owner (its socket takes it) and
  // waits; the retries reach b once b took the shards over.
  const early = call(b, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: 'early' }).catch((e: Error) => ({
    status: 0,
    body: String(e),
  }));
  await sleep(500);
  const resolved = await callRetrying(b, 'POST', `/v1/transactions/${id}/resolve`, ADMIN, { note: 'while paused' });
  a.child.kill('SIGCONT');
  const first = await early;
  const answers = [first, resolved];
  t.equal(answers.filter((x) => x.status === 200).length, 1, `one resolve applied: ${JSON.stringify(answers)}`);
  h.release();
  await settled([a, b]);
  const applied = answers.find((x) => x.status === 200);
  const note = applied === first ? 'early' : 'while paused';
  for (const s of [a, b]) {
    const notes = (await historyOf(s, id)).filter((e) => e.type === 'heuristic-resolved').map((e) => e.note);
    t.same(notes, [note], `the applied resolution, once, in the history at ${s === a ? 'the woken a' : 'b'}`);
  }
  const view = await callRetrying(b, 'GET', `/v1/transactions/${id}`, ADMIN);
  t.equal(view.body.participants[0].heuristicResolved?.note, note, 'the view shows the one applied');
});

// FINDING (not fixed): fails now and then, more often with
// COMMITD_PROBE_ROUNDS=6 (2 runs of 3; 3 and 1 rounds of 6): right after the
// transaction reads 'aborted', its history read at one instance lacks the
// 'decided' entry and one of the two 'requested abort' entries, which a read
// a moment later shows. Likely cause: PostgresLog.flush takes pendingHistory
// into the batch it writes (this.pendingHistory = new Map()) before the
// batch commits, so a history read while a batch is in flight finds its
// entries neither in the store nor in memory.
t.test("an operator's abort sent to both instances at once: decided once, in the history once", async (t) => {
  const { a, b } = await sharedPair();
  for (let round = 0; round < ROUNDS; round++) {
    const yes = await participant(t);
    const begun = await call(a, 'POST', '/v1/transactions', ALICE, { participants: [{ name: 'p', url: yes.url }] });
    const id = begun.body.id as string;
    if (round % 2 === 1) t.equal((await call(b, 'POST', `/v1/transactions/${id}/prepare`, ALICE)).status, 200);
    const answers = await Promise.all([a, b].map((s) => call(s, 'POST', `/v1/transactions/${id}/abort`, ADMIN)));
    t.same(
      answers.map((x) => [x.status, x.body?.outcome]),
      [
        [200, 'abort'],
        [200, 'abort'],
      ],
      `round ${round}: both told abort: ${JSON.stringify(answers.map((x) => x.body))}`,
    );
    await waitUntil(async () => (await call(b, 'GET', `/v1/transactions/${id}`, ADMIN)).body.state === 'aborted');
    for (const s of [a, b]) {
      const entries = await historyOf(s, id);
      t.equal(
        entries.filter((e) => e.type === 'decided').length,
        1,
        `round ${round}: decided once at ${s === a ? 'a' : 'b'}`,
      );
      t.equal(
        entries.filter((e) => e.type === 'requested' && e.action === 'abort').length,
        2,
        `round ${round}: both requests in the history at ${s === a ? 'a' : 'b'}`,
      );
    }
    t.equal(yes.count('commit', id), 0, `round ${round}: never a commit`);
  }
});
