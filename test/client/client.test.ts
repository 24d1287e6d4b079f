// The typed client against a real commitd process: every call, every typed
// error, retries, tokens, timeouts and AbortSignal.

import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import t from 'tap';
import {
  CommitdClient,
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  retryAfterMs,
  TimeoutError,
  TransactionAbortedError,
  UnauthorizedError,
  UnavailableError,
} from '../../src/client/index.js';
import { tempDir } from '../support/harness.js';
import { startParticipant, waitUntil } from '../support/participant.js';
import { startService } from '../support/service.js';

const commitd = await startService(tempDir(), {
  COMMITD_AUTH_TOKEN: 'client-token-0123456789',
  COMMITD_TOKENS: 'participant:participant-token-0123456789',
});
t.teardown(() => commitd.kill('SIGTERM'));
const client = new CommitdClient({ url: commitd.url, token: 'client-token-0123456789', retries: 0 });
t.teardown(() => client.close());
const yes = await startParticipant();
t.teardown(() => yes.close());
const no = await startParticipant((m) =>
  m.action === 'prepare' ? { status: 200, body: { vote: 'no', reason: 'declined' } } : undefined,
);
t.teardown(() => no.close());

t.test('step by step: begin, enlist, prepare, commit, get, outcome', async (t) => {
  const tx = await client.begin({ participants: [{ name: 'a', url: yes.url }], timeoutMs: 30_000, metadata: { k: 1 } });
  t.equal(tx.state, 'active');
  t.same(tx.metadata, { k: 1 });
  const enlisted = await client.enlist(tx.id, { name: 'b', url: yes.url, payload: { n: 2 } });
  t.same(
    enlisted.participants.map((p) => p.name),
    ['a', 'b'],
  );
  t.equal((await client.enlist(tx.id, { name: 'b', url: yes.url })).participants.length, 2, 'enlist repeated');
  t.equal(await client.outcome(tx.id), 'pending');
  t.equal((await client.prepare(tx.id)).state, 'prepared');
  const committed = await client.commit(tx.id);
  t.equal(committed.state, 'committed');
  t.equal((await client.commit(tx.id)).state, 'committed', 'commit repeated');
  t.equal((await client.get(tx.id)).outcome, 'commit');
  t.equal(await client.outcome(tx.id), 'commit');
  t.equal(yes.count('commit', tx.id), 2);
});

t.test('run: a one-shot commit', async (t) => {
  const tx = await client.run({ participants: [{ name: 'a', url: yes.url, payload: { x: 1 } }] });
  t.equal(tx.state, 'committed');
  t.same(yes.received.find((m) => m.txId === tx.id && m.action === 'prepare')?.body.payload, { x: 1 });
});

t.test("a call's traceparent reaches commitd, which passes it on to the participants", async (t) => {
  const traceParent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const tx = await client.run({ participants: [{ name: 'a', url: yes.url }] }, { traceParent });
  const messages = yes.received.filter((m) => m.txId === tx.id);
  t.same(
    messages.map((m) => [m.action, m.headers.traceparent]),
    [
      ['prepare', traceParent],
      ['commit', traceParent],
    ],
    'no SDK runs in the service: the traceparent is passed on as it came',
  );
});

t.test('begin with an idempotency key answers the same transaction; without one the client makes one', async (t) => {
  const key = `key-${Date.now()}`;
  const first = await client.begin({ idempotencyKey: key });
  const again = await client.begin({ idempotencyKey: key });
  t.equal(again.id, first.id);
  const retrying = new CommitdClient({ url: commitd.url, token: 'client-token-0123456789' });
  t.teardown(() => retrying.close());
  t.match((await retrying.begin()).idempotencyKey, /^client-[0-9a-f-]{36}$/);
  t.equal((await client.begin()).idempotencyKey, null, 'with retries off, no key is added');
});

t.test('abort, and list with paging', async (t) => {
  const a = await client.begin();
  const b = await client.begin();
  t.equal((await client.abort(a.id)).outcome, 'abort');
  t.equal((await client.abort(a.id)).outcome, 'abort', 'abort repeated');
  const page = await client.list({ limit: 1 });
  t.equal(page.transactions.length, 1);
  t.equal(page.transactions[0]?.id, b.id, 'newest first');
  const next = await client.list({ limit: 1, after: page.next as string });
  t.equal(next.transactions[0]?.id, a.id);
  const aborted = await client.list({ state: 'aborted', limit: 500 });
  t.ok(aborted.transactions.every((x) => x.state === 'aborted'));
  t.ok(aborted.transactions.some((x) => x.id === a.id));
});

t.test('TransactionAbortedError carries the aborted transaction and the problem', async (t) => {
  const error = await client
    .run({
      participants: [
        { name: 'a', url: yes.url },
        { name: 'n', url: no.url },
      ],
    })
    .catch((e: unknown) => e);
  t.type(error, TransactionAbortedError);
  const e = error as TransactionAbortedError;
  t.equal(e.status, 409);
  t.equal(e.problem.type, 'urn:commitd:problem:transaction-aborted');
  t.equal(e.transaction.outcome, 'abort');
  t.match(e.transaction.participants[1], { vote: 'no', reason: 'declined' });
  const stepwise = await client.begin({ participants: [{ name: 'n', url: no.url }] });
  await t.rejects(client.prepare(stepwise.id), TransactionAbortedError);
  await t.rejects(client.commit(stepwise.id), TransactionAbortedError);
});

t.test('ConflictError: a taken name, a commit decision, a reused key', async (t) => {
  const tx = await client.begin({ participants: [{ name: 'a', url: yes.url }] });
  const taken = await client.enlist(tx.id, { name: 'a', url: no.url }).catch((e: unknown) => e);
  t.type(taken, ConflictError);
  t.equal((taken as ConflictError).transaction?.id, tx.id);
  await client.commit(tx.id);
  const late = await client.abort(tx.id).catch((e: unknown) => e);
  t.type(late, ConflictError);
  t.equal((late as ConflictError).problem.type, 'urn:commitd:problem:transaction-committed');
  const key = `reused-${Date.now()}`;
  await client.begin({ idempotencyKey: key, timeoutMs: 10_000 });
  await t.rejects(client.begin({ idempotencyKey: key, timeoutMs: 20_000 }), ConflictError);
});

t.test('NotFoundError, InvalidRequestError', async (t) => {
  const missing = await client.get(`tx_${'0'.repeat(26)}`).catch((e: unknown) => e);
  t.type(missing, NotFoundError);
  t.equal((missing as NotFoundError).problem.status, 404);
  await t.rejects(client.get('not an id'), InvalidRequestError);
  await t.rejects(client.begin({ participants: [{ name: 'a', url: 'ftp://x' }] }), InvalidRequestError);
});

t.test('UnauthorizedError: no token or an unknown one (401), a role without the right (403)', async (t) => {
  const anonymous = new CommitdClient({ url: commitd.url, retries: 0 });
  const wrong = new CommitdClient({ url: commitd.url, token: 'nope', retries: 0 });
  const participant = new CommitdClient({ url: commitd.url, token: 'participant-token-0123456789', retries: 0 });
  t.teardown(async () => {
    await anonymous.close();
    await wrong.close();
    await participant.close();
  });
  const e1 = await anonymous.list().catch((e: unknown) => e);
  t.type(e1, UnauthorizedError);
  t.equal((e1 as UnauthorizedError).status, 401);
  const e2 = await wrong.list().catch((e: unknown) => e);
  t.type(e2, UnauthorizedError);
  t.equal((e2 as UnauthorizedError).status, 401);
  const e3 = await participant.list().catch((e: unknown) => e);
  t.type(e3, UnauthorizedError);
  t.equal((e3 as UnauthorizedError).status, 403, 'a participant token may not list');
});

t.test('UnavailableError with Retry-After, and a retried begin that succeeds', async (t) => {
  const busy = await startService(tempDir(), { COMMITD_MAX_IN_FLIGHT: '1' });
  t.teardown(() => busy.kill('SIGTERM'));
  const once = new CommitdClient({ url: busy.url, retries: 0 });
  const patient = new CommitdClient({ url: busy.url, retries: 3 });
  t.teardown(async () => {
    await once.close();
    await patient.close();
  });
  const holder = await once.begin({ timeoutMs: 60_000 });
  const error = await once.begin().catch((e: unknown) => e);
  t.type(error, UnavailableError);
  t.equal((error as UnavailableError).status, 503);
  t.equal((error as UnavailableError).retryAfterMs, 1000);
  // The slot frees while the patient client waits out Retry-After.
  const freed = new Promise((r) => setTimeout(r, 300)).then(() => once.abort(holder.id));
  const tx = await patient.begin({ timeoutMs: 60_000 });
  await freed;
  t.equal(tx.state, 'active');
  t.match(tx.idempotencyKey, /^client-/);
});

t.test('a begin whose answer is lost on the way is retried under the same key: one transaction', async (t) => {
  // A proxy that forwards the first request to commitd, lets commitd act on
  // it, and then cuts the connection instead of passing the answer back.
  const target = new URL(commitd.url);
  let connections = 0;
  const proxy = net.createServer((socket) => {
    connections++;
    const upstream = net.connect(Number(target.port), target.hostname);
    socket.pipe(upstream);
    if (connections === 1) upstream.once('data', () => socket.destroy());
    else upstream.pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => proxy.close(() => r())));
  const through = new CommitdClient({
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    token: 'client-token-0123456789',
    retries: 2,
    retryDelayMsMin: 10,
  });
  t.teardown(() => through.close());
  const metadata = { run: `lost-answer-${Date.now()}` };
  const tx = await through.begin({ metadata, timeoutMs: 30_000 });
  t.equal(connections, 2, 'the first answer was lost, the retry went through');
  const all = await client.list({ limit: 500 });
  t.same(
    all.transactions.filter((x) => (x.metadata as { run?: string } | null)?.run === metadata.run).map((x) => x.id),
    [tx.id],
    'commitd holds one transaction for the two attempts',
  );
});

t.test('UnavailableError when commitd cannot be reached, after the retries', async (t) => {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  const down = new CommitdClient({ url: `http://127.0.0.1:${port}`, retries: 2, retryDelayMsMin: 10 });
  t.teardown(() => down.close());
  const error = await down.get('tx_x').catch((e: unknown) => e);
  t.type(error, UnavailableError);
  t.equal((error as UnavailableError).status, 0);
  t.match((error as UnavailableError).problem.detail, /ECONNREFUSED/);
});

t.test('TimeoutError: the call timeout, and the caller AbortSignal', async (t) => {
  const hang = await startParticipant(() => 'hang');
  t.teardown(() => hang.close());
  const tx = await client.begin({ participants: [{ name: 'h', url: hang.url }] });
  const timedOut = await client.commit(tx.id, { timeoutMs: 100 }).catch((e: unknown) => e);
  t.type(timedOut, TimeoutError);
  t.match((timedOut as TimeoutError).problem.detail, /timed out/);
  const controller = new AbortController();
  const pending = client.commit(tx.id, { signal: controller.signal });
  controller.abort();
  const aborted = await pending.catch((e: unknown) => e);
  t.type(aborted, TimeoutError);
  t.match((aborted as TimeoutError).problem.detail, /aborted by the caller/);
});

t.test('list with the operator filters: state, stuck, heuristic, older than, participant', async (t) => {
  const name = `filtered-${Date.now()}`;
  let failing = true;
  const flaky = await startParticipant((m) =>
    m.action === 'commit' && failing ? { status: 500, body: { error: 'down' } } : undefined,
  );
  t.teardown(() => flaky.close());
  const rogue = await startParticipant((m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  t.teardown(() => rogue.close());
  const active = await client.begin({ participants: [{ name, url: yes.url }], timeoutMs: 600_000 });
  const stuck = await client.run({ participants: [{ name, url: flaky.url }] });
  const heuristic = await client.run({ participants: [{ name, url: rogue.url }] });
  const ids = async (options: Parameters<CommitdClient['list']>[0]) =>
    (await client.list({ participant: name, ...options })).transactions.map((x) => x.id);

  t.same(await ids({}), [heuristic.id, stuck.id, active.id], 'participant: only these three, newest first');
  t.same(await ids({ state: 'active' }), [active.id]);
  t.same(await ids({ heuristicUnresolved: true }), [heuristic.id]);
  t.same(await ids({ olderThanMs: 3_600_000 }), [], 'none an hour old');
  await new Promise((r) => setTimeout(r, 20));
  t.same(await ids({ olderThanMs: 10 }), [heuristic.id, stuck.id, active.id]);
  // The stuck threshold (10 failed attempts) is reached within the fast retry delays.
  await waitUntil(() => flaky.count('commit', stuck.id) >= 11, 20_000, 'ten failed deliveries');
  t.same(await ids({ stuck: true }), [stuck.id]);
  t.same(await ids({ limit: 1, after: stuck.id }), [active.id], 'filters and pages combine');
  failing = false;
  await client.abort(active.id);
});

t.test('history: oldest first; NotFoundError for an unknown id', async (t) => {
  const tx = await client.run({ participants: [{ name: 'a', url: yes.url }] });
  const history = await client.history(tx.id);
  t.equal(history.transactionId, tx.id);
  t.equal(history.truncated, false);
  const types = history.entries.map((e) => e.type);
  t.equal(types[0], 'begun');
  t.equal(types.at(-1), 'finished');
  t.match(
    history.entries.find((e) => e.type === 'voted'),
    { participant: 'a', vote: 'yes' },
  );
  t.match(
    history.entries.find((e) => e.type === 'decided'),
    { outcome: 'commit', reason: 'all-voted-yes' },
  );
  await t.rejects(client.history(`tx_${'0'.repeat(26)}`), NotFoundError);
});

t.test('retry: resends phase two; ConflictError before a decision; NotFoundError', async (t) => {
  let failing = true;
  const flaky = await startParticipant((m) =>
    m.action === 'commit' && failing ? { status: 503, body: {} } : undefined,
  );
  t.teardown(() => flaky.close());
  const tx = await client.run({ participants: [{ name: 'f', url: flaky.url }] });
  t.equal(tx.state, 'committing');
  // Still failing: the transaction is owed a commit whatever the timing, so the retry starts resends.
  const retried = await client.retry(tx.id);
  t.match(retried, { id: tx.id, state: 'committing' });
  const history = await client.history(tx.id);
  t.ok(history.entries.some((e) => e.type === 'operator-retry'));
  failing = false;
  await flaky.waitFor(() => flaky.states.get(tx.id) === 'committed');
  const undecided = await client.begin();
  const early = await client.retry(undecided.id).catch((e: unknown) => e);
  t.type(early, ConflictError);
  t.equal((early as ConflictError).problem.type, 'urn:commitd:problem:transaction-not-decided');
  await client.abort(undecided.id);
  await t.rejects(client.retry(`tx_${'0'.repeat(26)}`), NotFoundError);
});

t.test("abort with an admin token is the operator's", async (t) => {
  const tx = await client.begin({ participants: [{ name: 'a', url: yes.url }] });
  t.match(await client.abort(tx.id), { outcome: 'abort', abortReason: 'operator' });
});

t.test('resolve: a heuristic marked resolved; ConflictError when nothing is left; bad notes', async (t) => {
  const rogue = await startParticipant((m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  t.teardown(() => rogue.close());
  const tx = await client.run({
    participants: [
      { name: 'r', url: rogue.url },
      { name: 'a', url: yes.url },
    ],
  });
  t.equal(tx.mixedOutcome, true);
  await t.rejects(client.resolve(tx.id, { note: '' }), InvalidRequestError);
  await t.rejects(client.resolve(tx.id, { note: 'x'.repeat(1001) }), InvalidRequestError);
  const wrong = await client.resolve(tx.id, { note: 'n', participant: 'a' }).catch((e: unknown) => e);
  t.type(wrong, ConflictError, 'that participant has no heuristic');
  const resolved = await client.resolve(tx.id, { note: 'refunded by hand', participant: 'r' });
  t.match(
    resolved.participants.find((p) => p.name === 'r'),
    {
      heuristic: 'abort',
      heuristicResolved: { note: 'refunded by hand', at: String },
    },
  );
  const again = await client.resolve(tx.id, { note: 'again' }).catch((e: unknown) => e);
  t.type(again, ConflictError);
  t.equal((again as ConflictError).problem.type, 'urn:commitd:problem:nothing-to-resolve');
  t.equal((again as ConflictError).transaction?.id, tx.id);
  t.match(
    (await client.history(tx.id)).entries.find((e) => e.type === 'heuristic-resolved'),
    { participant: 'r', note: 'refunded by hand' },
  );
  await t.rejects(client.resolve(`tx_${'0'.repeat(26)}`, { note: 'x' }), NotFoundError);
});

t.test('stats: the overview', async (t) => {
  const holder = await client.begin({ timeoutMs: 60_000 });
  const stats = await client.stats();
  t.match(stats, {
    inFlight: { active: Number },
    decidedPerSecond: { commit: Number, abort: Number },
    stuckParticipants: Number,
    unresolvedHeuristics: Number,
    oldestUnfinished: { id: String, createdAt: String, ageMs: Number, state: String },
    stuckAfterAttempts: 10,
  });
  t.ok(stats.inFlight.active >= 1);
  await client.abort(holder.id);
});

t.test('the admin calls: UnauthorizedError for a participant token, TimeoutError for an aborted signal', async (t) => {
  const participant = new CommitdClient({ url: commitd.url, token: 'participant-token-0123456789', retries: 0 });
  t.teardown(() => participant.close());
  const tx = await client.begin();
  for (const call of [
    () => participant.history(tx.id),
    () => participant.retry(tx.id),
    () => participant.resolve(tx.id, { note: 'x' }),
    () => participant.stats(),
    () => participant.list({ stuck: true }),
  ]) {
    const e = await call().catch((error: unknown) => error);
    t.type(e, UnauthorizedError);
    t.equal((e as UnauthorizedError).status, 403);
  }
  const controller = new AbortController();
  controller.abort();
  await t.rejects(client.stats({ signal: controller.signal }), TimeoutError);
  await t.rejects(client.history(tx.id, { timeoutMs: 1, signal: controller.signal }), TimeoutError);
  await client.abort(tx.id);
});

t.test('retryAfterMs reads seconds and HTTP dates, bounded', async (t) => {
  t.equal(retryAfterMs('2'), 2000);
  t.equal(retryAfterMs(undefined), null);
  t.equal(retryAfterMs('soon'), null);
  t.equal(retryAfterMs(new Date(10_000).toUTCString(), 5_000), 5000);
  t.equal(retryAfterMs('999999'), 3_600_000);
});
