// The client API end to end, in process, against real HTTP test participants:
// explicit and one-shot two-phase commit, votes, timeouts, deadlines, aborts,
// retries, heuristics, idempotent repeats, the outcome inquiry, listing,
// operations endpoints, request signing and bearer authentication.

import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';
import {
  type Behavior,
  type Reply,
  startParticipant,
  type TestParticipant,
  waitUntil,
} from '../support/participant.js';

const TERMINAL = ['committed', 'aborted'];

async function harness(t: Test, overrides: Overrides = {}): Promise<Harness> {
  const h = await startHarness(overrides);
  t.teardown(() => h.close(true));
  return h;
}

async function participant(t: Test, behavior: Behavior | null = null): Promise<TestParticipant> {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

function post(h: Harness, url: string, payload?: object, headers?: Record<string, string>) {
  return h.app.inject({ method: 'POST', url, payload, headers });
}

function get(h: Harness, url: string, headers?: Record<string, string>) {
  return h.app.inject({ method: 'GET', url, headers });
}

/** Asserts an RFC 9457 problem with this status and returns its body. */
function problem(t: Test, res: LightMyRequestResponse, status: number): any {
  t.equal(res.statusCode, status, res.body);
  t.match(res.headers['content-type'], /^application\/problem\+json/);
  const body = res.json();
  t.match(body, { type: String, title: String, detail: String, status });
  return body;
}

/** Polls GET until the predicate holds (bounded); returns the transaction. */
async function pollTx(h: Harness, id: string, predicate: (tx: any) => boolean, timeoutMs = 10_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await get(h, `/v1/transactions/${id}`);
    if (res.statusCode !== 200) throw new Error(`GET ${id}: ${res.statusCode} ${res.body}`);
    const tx = res.json();
    if (predicate(tx)) return tx;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${JSON.stringify(tx)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const finished = (tx: any) => TERMINAL.includes(tx.state);

function byName(tx: any, name: string): any {
  const p = tx.participants.find((q: any) => q.name === name);
  if (p === undefined) throw new Error(`no participant ${name} in ${JSON.stringify(tx)}`);
  return p;
}

/** The value of one Prometheus sample, or undefined when absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const escaped = `${name}${labels ? `{${labels}}` : ''}`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

const votes =
  (vote: string): Behavior =>
  (m, p) => {
    if (m.action !== 'prepare') return undefined;
    p.states.set(m.txId, vote === 'no' ? 'refused' : 'prepared');
    return { status: 200, body: { vote, ...(vote === 'no' ? { reason: 'out of stock' } : {}) } };
  };

t.test('explicit begin, enlist, prepare, commit', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);

  const begun = await post(h, '/v1/transactions', { participants: [], metadata: { order: 7 } });
  t.equal(begun.statusCode, 201, begun.body);
  const tx = begun.json();
  const id = tx.id;
  t.match(id, /^tx_[0-9A-HJKMNP-TV-Z]{26}$/);
  t.equal(begun.headers.location, `/v1/transactions/${id}`);
  t.match(tx, { state: 'active', outcome: null, participants: [], metadata: { order: 7 } });
  t.equal(Date.parse(tx.deadline) - Date.parse(tx.createdAt), h.config.transactions.defaultTimeoutMs);

  const enlisted = await post(h, `/v1/transactions/${id}/participants`, {
    name: 'orders',
    url: a.url,
    payload: { sku: 'A-1' },
  });
  t.equal(enlisted.statusCode, 201, enlisted.body);
  t.same(enlisted.json().participants, [{ name: 'orders', url: a.url, vote: null, acknowledged: false }]);

  const again = await post(h, `/v1/transactions/${id}/participants`, {
    name: 'orders',
    url: a.url,
    payload: { sku: 'A-1' },
  });
  t.equal(again.statusCode, 200, 'the same name and url again is a repeat');
  t.equal(again.json().participants.length, 1);

  const taken = await post(h, `/v1/transactions/${id}/participants`, { name: 'orders', url: b.url });
  const conflict = problem(t, taken, 409);
  t.same(
    conflict.transaction.participants.map((p: any) => [p.name, p.url]),
    [['orders', a.url]],
    'the taken name keeps its url',
  );

  t.equal((await post(h, `/v1/transactions/${id}/participants`, { name: 'payments', url: b.url })).statusCode, 201);
  t.equal(a.received.length + b.received.length, 0, 'nobody hears anything before prepare');

  const prepared = await post(h, `/v1/transactions/${id}/prepare`);
  t.equal(prepared.statusCode, 200, prepared.body);
  t.match(prepared.json(), {
    state: 'prepared',
    outcome: null,
    participants: [
      { name: 'orders', vote: 'yes', acknowledged: false },
      { name: 'payments', vote: 'yes', acknowledged: false },
    ],
  });
  t.same(a.received[0]?.body, { transactionId: id, participant: 'orders', payload: { sku: 'A-1' } });
  t.same(b.received[0]?.body, { transactionId: id, participant: 'payments', payload: null });
  t.equal(a.received[0]?.headers['x-commitd-transaction'], id);
  t.equal(a.received[0]?.headers['x-commitd-signature'], undefined, 'no signature without a secret');
  t.equal(a.states.get(id), 'prepared');

  const late = await post(h, `/v1/transactions/${id}/participants`, { name: 'shipping', url: b.url });
  t.equal(problem(t, late, 409).transaction.state, 'prepared');
  t.equal((await get(h, `/v1/transactions/${id}`)).json().participants.length, 2, 'the late enlistment left no trace');

  const committed = await post(h, `/v1/transactions/${id}/commit`);
  t.equal(committed.statusCode, 200, committed.body);
  t.match(committed.json(), {
    id,
    state: 'committed',
    outcome: 'commit',
    participants: [
      { name: 'orders', vote: 'yes', acknowledged: true },
      { name: 'payments', vote: 'yes', acknowledged: true },
    ],
  });
  t.equal(a.states.get(id), 'committed');
  t.equal(b.states.get(id), 'committed');
  t.same(
    a.received.map((m) => m.action),
    ['prepare', 'commit'],
  );
  t.same(
    b.received.map((m) => m.action),
    ['prepare', 'commit'],
  );
  t.equal((await get(h, `/v1/transactions/${id}`)).json().state, 'committed');
  t.same(h.errors, []);
});

t.test('a no vote aborts a one-shot commit', async (t) => {
  const h = await harness(t);
  const yes = await participant(t);
  const no = await participant(t, votes('no'));
  const res = await post(h, '/v1/transactions', {
    participants: [
      { name: 'orders', url: yes.url },
      { name: 'payments', url: no.url },
    ],
    commit: true,
  });
  const body = problem(t, res, 409);
  const id = body.transaction.id;
  t.equal(res.headers.location, `/v1/transactions/${id}`);
  t.match(body.transaction, { outcome: 'abort', abortReason: 'vote' });
  t.ok(['aborting', 'aborted'].includes(body.transaction.state), body.transaction.state);
  t.match(byName(body.transaction, 'payments'), { vote: 'no', reason: 'out of stock' });

  await waitUntil(() => yes.states.get(id) === 'aborted', 5000, 'the yes-voter to hear the abort');
  const tx = await pollTx(h, id, finished);
  t.equal(tx.state, 'aborted');
  t.equal(yes.count('abort', id), 1, 'the yes-voter gets an abort');
  t.equal(no.count('abort', id), 0, 'the no-voter rolled back on its own and hears nothing more');
  t.equal(yes.count('commit') + no.count('commit'), 0);
  t.not(yes.states.get(id), 'prepared');
  t.not(no.states.get(id), 'prepared');
  t.same((await get(h, `/v1/transactions/${id}/outcome`)).json(), { outcome: 'abort' });
  t.same(h.errors, []);
});

t.test('a no vote on an explicit prepare answers 409 with the aborted transaction', async (t) => {
  const h = await harness(t);
  const yes = await participant(t);
  const no = await participant(t, votes('no'));
  const begun = await post(h, '/v1/transactions', {
    participants: [
      { name: 'orders', url: yes.url },
      { name: 'payments', url: no.url },
    ],
  });
  const id = begun.json().id;
  const body = problem(t, await post(h, `/v1/transactions/${id}/prepare`), 409);
  t.match(body.transaction, { id, outcome: 'abort', abortReason: 'vote' });
  await waitUntil(() => yes.states.get(id) === 'aborted', 5000, 'the yes-voter to hear the abort');
  t.equal((await pollTx(h, id, finished)).state, 'aborted');
  t.equal(no.count('abort', id), 0);
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/commit`), 409).transaction.outcome, 'abort');
});

t.test('a read-only voter hears nothing after prepare and the transaction commits', async (t) => {
  const h = await harness(t);
  const reader = await participant(t, votes('read-only'));
  const writer = await participant(t);
  const res = await post(h, '/v1/transactions', {
    participants: [
      { name: 'reports', url: reader.url },
      { name: 'orders', url: writer.url },
    ],
    commit: true,
  });
  t.equal(res.statusCode, 200, res.body);
  const tx = res.json();
  t.match(tx, { state: 'committed', outcome: 'commit' });
  t.match(byName(tx, 'reports'), { vote: 'read-only', acknowledged: true });
  t.match(byName(tx, 'orders'), { vote: 'yes', acknowledged: true });
  t.same(
    reader.received.map((m) => m.action),
    ['prepare'],
    'no commit (nor abort) for the read-only voter',
  );
  t.equal(writer.states.get(tx.id), 'committed');
});

t.test('only read-only voters: committed with no phase two', async (t) => {
  const h = await harness(t);
  const reader = await participant(t, votes('read-only'));
  const res = await post(h, '/v1/transactions', { participants: [{ name: 'reports', url: reader.url }], commit: true });
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { state: 'committed', outcome: 'commit' });
  t.same(
    reader.received.map((m) => m.action),
    ['prepare'],
  );
});

t.test('a single participant is prepared, then committed', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const res = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], commit: true });
  t.equal(res.statusCode, 200, res.body);
  const tx = res.json();
  t.match(tx, { state: 'committed', outcome: 'commit', participants: [{ vote: 'yes', acknowledged: true }] });
  t.same(
    a.received.map((m) => m.action),
    ['prepare', 'commit'],
    'no one-phase shortcut',
  );
  t.equal(a.states.get(tx.id), 'committed');
});

t.test('zero participants with commit: true commits at once', async (t) => {
  const h = await harness(t);
  const res = await post(h, '/v1/transactions', { participants: [], commit: true });
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { state: 'committed', outcome: 'commit', participants: [] });
  t.equal(res.headers.location, `/v1/transactions/${res.json().id}`);
  const noBody = await post(h, '/v1/transactions', { commit: true });
  t.equal(noBody.statusCode, 200, 'participants may be left out');
  t.equal(noBody.json().state, 'committed');
});

t.test('a participant that hangs on prepare counts as no when the prepare timeout passes', async (t) => {
  const h = await harness(t, { participants: { prepareTimeoutMs: 200 } });
  const hanging = await participant(t, (m) => (m.action === 'prepare' ? 'hang' : undefined));
  const good = await participant(t);
  const startedAt = Date.now();
  const res = await post(h, '/v1/transactions', {
    participants: [
      { name: 'slow', url: hanging.url },
      { name: 'fast', url: good.url },
    ],
    commit: true,
  });
  const tookMs = Date.now() - startedAt;
  const body = problem(t, res, 409);
  const id = body.transaction.id;
  t.ok(tookMs >= 190 && tookMs < 3000, `answered after the prepare timeout (${tookMs} ms)`);
  t.match(body.transaction, { outcome: 'abort', abortReason: 'vote' });
  t.equal(byName(body.transaction, 'slow').vote, 'no');
  t.type(byName(body.transaction, 'slow').reason, 'string');
  await waitUntil(() => hanging.count('abort', id) >= 1, 5000, 'the hanging participant to be sent abort');
  await waitUntil(() => good.states.get(id) === 'aborted', 5000, 'the good participant to hear the abort');
  t.equal((await pollTx(h, id, finished)).state, 'aborted');
  t.equal(good.count('commit') + hanging.count('commit'), 0);
});

t.test('a prepare answered with anything but a vote counts as no', async (t) => {
  const raw = (body: string, status = 200) =>
    new Promise<string>((resolve) => {
      const server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(req.url?.endsWith('/prepare') ? body : '{}');
        });
      });
      t.teardown(() => new Promise<void>((r) => server.close(() => r())));
      server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/tx`));
    });
  /** A test participant that answers prepare with `reply`. */
  const answering = (reply: Reply) => async () =>
    (await participant(t, (m) => (m.action === 'prepare' ? reply : undefined))).url;
  const cases: Array<[string, () => Promise<string>]> = [
    ['HTTP 500', answering({ status: 500 })],
    ['HTTP 201 with a yes', answering({ status: 201, body: { vote: 'yes' } })],
    ['truncated JSON', () => raw('{"vote":')],
    ['not JSON', () => raw('yes')],
    ['a vote that is no vote', answering({ status: 200, body: { vote: 'maybe' } })],
    ['a JSON string', answering({ status: 200, body: 'yes' })],
    ['an empty object', answering({ status: 200, body: {} })],
    ['a dropped connection', answering('reset')],
  ];
  const h = await harness(t);
  const good = await participant(t);
  for (const [what, start] of cases) {
    const url = await start();
    const res = await post(h, '/v1/transactions', {
      participants: [
        { name: 'odd', url },
        { name: 'good', url: good.url },
      ],
      commit: true,
    });
    const body = problem(t, res, 409);
    t.equal(body.transaction.outcome, 'abort', what);
    t.equal(byName(body.transaction, 'odd').vote, 'no', `${what}: counts as a no vote`);
    const id = body.transaction.id;
    await waitUntil(() => good.states.get(id) === 'aborted', 5000, `${what}: the good participant to hear the abort`);
    t.equal((await pollTx(h, id, finished)).state, 'aborted', `${what}: aborted`);
  }
  t.equal(good.count('commit'), 0);
  t.same(h.errors, []);
});

t.test('a transaction past its deadline without a decision is aborted', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const begun = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], timeoutMs: 200 });
  t.equal(begun.statusCode, 201);
  const id = begun.json().id;
  t.equal(Date.parse(begun.json().deadline) - Date.parse(begun.json().createdAt), 200);
  const tx = await pollTx(h, id, (x) => x.state === 'aborted', 5000);
  t.match(tx, { outcome: 'abort', abortReason: 'deadline' });
  t.ok(Date.now() >= Date.parse(tx.deadline), 'not before the deadline');
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/commit`), 409).transaction.outcome, 'abort');
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/prepare`), 409).transaction.outcome, 'abort');
  t.equal(a.count('prepare') + a.count('commit'), 0, 'nobody was asked to prepare or commit');
  t.same((await get(h, `/v1/transactions/${id}/outcome`)).json(), { outcome: 'abort' });
});

t.test('a client abort reaches every participant that was asked to prepare', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);
  const begun = await post(h, '/v1/transactions', {
    participants: [
      { name: 'orders', url: a.url },
      { name: 'payments', url: b.url },
    ],
  });
  const id = begun.json().id;
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).statusCode, 200);
  const res = await post(h, `/v1/transactions/${id}/abort`);
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { id, outcome: 'abort', abortReason: 'client' });
  t.ok(['aborting', 'aborted'].includes(res.json().state), res.json().state);
  await waitUntil(() => a.states.get(id) === 'aborted' && b.states.get(id) === 'aborted', 5000, 'both to abort');
  const tx = await pollTx(h, id, finished);
  t.equal(tx.state, 'aborted');
  t.equal(a.count('commit') + b.count('commit'), 0);

  const again = await post(h, `/v1/transactions/${id}/abort`);
  t.equal(again.statusCode, 200, 'abort on an aborted transaction answers 200 again');
  t.match(again.json(), { id, state: 'aborted', outcome: 'abort' });
  t.equal(a.count('abort', id), 1, 'and sends nothing more');
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/commit`), 409).transaction.state, 'aborted');
});

t.test('a prepared transaction past its deadline is aborted and its participants hear it', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);
  const begun = await post(h, '/v1/transactions', {
    participants: [
      { name: 'orders', url: a.url },
      { name: 'payments', url: b.url },
    ],
    timeoutMs: 300,
  });
  const id = begun.json().id;
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).json().state, 'prepared');
  const tx = await pollTx(h, id, finished, 5000);
  t.match(tx, { state: 'aborted', outcome: 'abort', abortReason: 'deadline' });
  t.equal(a.states.get(id), 'aborted', 'nobody is left prepared');
  t.equal(b.states.get(id), 'aborted');
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/commit`), 409).transaction.outcome, 'abort');
  t.equal(a.count('commit') + b.count('commit'), 0);
});

t.test('a commit decision is never aborted by the deadline', async (t) => {
  const h = await harness(t);
  let failUntilMs = Number.POSITIVE_INFINITY;
  const slow = await participant(t, (m) =>
    m.action === 'commit' && Date.now() < failUntilMs ? { status: 503 } : undefined,
  );
  const begun = await post(h, '/v1/transactions', {
    participants: [{ name: 'orders', url: slow.url }],
    timeoutMs: 200,
  });
  const id = begun.json().id;
  const deadlineMs = Date.parse(begun.json().deadline);
  failUntilMs = deadlineMs + 300;
  const res = await post(h, `/v1/transactions/${id}/commit`);
  t.equal(res.statusCode, 202, res.body);
  t.equal(res.json().outcome, 'commit');
  const tx = await pollTx(h, id, finished);
  t.match(tx, { state: 'committed', outcome: 'commit', abortReason: null });
  t.ok(Date.parse(tx.finishedAt) > deadlineMs, 'phase two went on past the deadline');
  t.equal(slow.states.get(id), 'committed');
  t.equal(slow.count('abort'), 0);
});

t.test('a client abort while prepares are out reaches every participant asked to prepare', async (t) => {
  const h = await harness(t);
  const slow = await participant(t, (m, p) => {
    if (m.action !== 'prepare') return undefined;
    p.states.set(m.txId, 'prepared');
    return { status: 200, body: { vote: 'yes' }, delayMs: 300 };
  });
  const fast = await participant(t);
  const begun = await post(h, '/v1/transactions', {
    participants: [
      { name: 'slow', url: slow.url },
      { name: 'fast', url: fast.url },
    ],
  });
  const id = begun.json().id;
  const preparing = post(h, `/v1/transactions/${id}/prepare`);
  await waitUntil(() => slow.count('prepare', id) === 1 && fast.states.get(id) === 'prepared', 5000, 'prepares');
  const res = await post(h, `/v1/transactions/${id}/abort`);
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { outcome: 'abort', abortReason: 'client' });
  t.equal(problem(t, await preparing, 409).transaction.outcome, 'abort', 'the prepare call hears of the abort');
  await waitUntil(
    () => slow.states.get(id) === 'aborted' && fast.states.get(id) === 'aborted',
    5000,
    'both participants to hear the abort',
  );
  t.equal((await pollTx(h, id, finished)).state, 'aborted');
  t.equal(slow.count('commit') + fast.count('commit'), 0);
});

t.test('a client abort of an active transaction', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const begun = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] });
  const id = begun.json().id;
  const res = await post(h, `/v1/transactions/${id}/abort`);
  t.equal(res.statusCode, 200, res.body);
  t.match(res.json(), { id, outcome: 'abort', abortReason: 'client' });
  t.equal((await pollTx(h, id, finished)).state, 'aborted');
  t.equal(a.count('prepare') + a.count('commit'), 0);
  t.equal(problem(t, await post(h, `/v1/transactions/${id}/participants`, { name: 'x', url: a.url }), 409).status, 409);
});

t.test('abort after a commit decision is a 409', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const res = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }], commit: true });
  t.equal(res.statusCode, 200);
  const id = res.json().id;
  const body = problem(t, await post(h, `/v1/transactions/${id}/abort`), 409);
  t.match(body.transaction, { id, state: 'committed', outcome: 'commit' });
  t.equal(a.count('abort'), 0);
  t.equal((await get(h, `/v1/transactions/${id}`)).json().outcome, 'commit', 'the decision stands');
});

t.test('a participant failing commit is retried until it acknowledges: 202, then committed', async (t) => {
  const failures = 3;
  const h = await harness(t);
  const flaky = await participant(t, (m, p) =>
    m.action === 'commit' && p.count('commit', m.txId) <= failures ? { status: 503, body: {} } : undefined,
  );
  const steady = await participant(t);
  const res = await post(h, '/v1/transactions', {
    participants: [
      { name: 'flaky', url: flaky.url },
      { name: 'steady', url: steady.url },
    ],
    commit: true,
  });
  t.equal(res.statusCode, 202, res.body);
  const tx = res.json();
  t.match(tx, { state: 'committing', outcome: 'commit' });
  t.match(byName(tx, 'flaky'), { vote: 'yes', acknowledged: false, lastError: /503/ });
  t.ok(byName(tx, 'flaky').attempts >= 1);
  t.same((await get(h, `/v1/transactions/${tx.id}/outcome`)).json(), { outcome: 'commit' });

  const done = await pollTx(h, tx.id, finished);
  t.match(done, { state: 'committed', outcome: 'commit' });
  t.match(byName(done, 'flaky'), { acknowledged: true });
  t.equal(flaky.states.get(tx.id), 'committed');
  t.equal(flaky.count('commit', tx.id), failures + 1, 'retried until acknowledged, then no more');
  t.equal(steady.count('commit', tx.id), 1);
  t.equal(flaky.count('abort') + steady.count('abort'), 0);
});

t.test('heuristic outcomes are shown in the API and counted in metrics', async (t) => {
  const h = await harness(t);
  const rogue = await participant(t, (m, p) => {
    if (m.action === 'commit') {
      p.states.set(m.txId, 'aborted');
      return { status: 409, body: { heuristic: 'abort' } };
    }
    if (m.action === 'abort') {
      p.states.set(m.txId, 'committed');
      return { status: 409, body: { heuristic: 'commit' } };
    }
    return undefined;
  });
  const good = await participant(t);

  const committed = await post(h, '/v1/transactions', {
    participants: [
      { name: 'rogue', url: rogue.url },
      { name: 'good', url: good.url },
    ],
    commit: true,
  });
  t.equal(committed.statusCode, 200, committed.body);
  const c = committed.json();
  t.match(c, { state: 'committed', outcome: 'commit' });
  t.equal(c.mixedOutcome, true, 'the caller is told at the top of the answer that the outcome is mixed');
  t.match(byName(c, 'rogue'), { acknowledged: true, heuristic: 'abort' });
  t.notOk('heuristic' in byName(c, 'good'));
  t.equal(rogue.count('commit', c.id), 1, 'a heuristic answer is not retried');
  t.equal(byName((await get(h, `/v1/transactions/${c.id}`)).json(), 'rogue').heuristic, 'abort');

  const begun = await post(h, '/v1/transactions', { participants: [{ name: 'rogue', url: rogue.url }] });
  const id = begun.json().id;
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).statusCode, 200);
  t.equal((await post(h, `/v1/transactions/${id}/abort`)).statusCode, 200);
  const aborted = await pollTx(h, id, finished);
  t.match(aborted, { state: 'aborted', outcome: 'abort', mixedOutcome: true });
  t.match(byName(aborted, 'rogue'), { acknowledged: true, heuristic: 'commit' });
  const clean = await post(h, '/v1/transactions', { participants: [{ name: 'good', url: good.url }], commit: true });
  t.equal(clean.json().mixedOutcome, false, 'an atomic outcome says so too');

  const metrics = (await get(h, '/metrics')).body;
  t.equal(sample(metrics, 'commitd_heuristic_outcomes_total', 'heuristic="abort"'), 1);
  t.equal(sample(metrics, 'commitd_heuristic_outcomes_total', 'heuristic="commit"'), 1);
});

t.test('begin with an idempotency key', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const body = {
    participants: [{ name: 'orders', url: a.url, payload: { n: 1 } }],
    idempotencyKey: 'order-1',
    timeoutMs: 5000,
  };
  const first = await post(h, '/v1/transactions', body);
  t.equal(first.statusCode, 201);
  const id = first.json().id;
  t.equal(first.json().idempotencyKey, 'order-1');

  const second = await post(h, '/v1/transactions', body);
  t.equal(second.statusCode, 200, 'the same key again: 200');
  t.equal(second.json().id, id, 'the same transaction');
  t.equal(second.headers.location, `/v1/transactions/${id}`);

  const reordered = await post(h, '/v1/transactions', {
    timeoutMs: 5000,
    idempotencyKey: 'order-1',
    participants: [{ payload: { n: 1 }, url: a.url, name: 'orders' }],
  });
  t.equal(reordered.statusCode, 200, 'the same request with its fields in another order');
  t.equal(reordered.json().id, id);

  const other = await post(h, '/v1/transactions', { ...body, timeoutMs: 6000 });
  problem(t, other, 409);
  const otherPayload = await post(h, '/v1/transactions', {
    ...body,
    participants: [{ name: 'orders', url: a.url, payload: { n: 2 } }],
  });
  problem(t, otherPayload, 409);

  const list = (await get(h, '/v1/transactions')).json();
  t.same(
    list.transactions.map((x: any) => x.id),
    [id],
    'only one transaction exists',
  );
  t.equal(a.received.length, 0);
});

t.test('concurrent begins with the same idempotency key make one transaction', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const explicit = { participants: [{ name: 'orders', url: a.url }], idempotencyKey: 'same-explicit' };
  const answers = await Promise.all([1, 2, 3].map(() => post(h, '/v1/transactions', explicit)));
  t.same(answers.map((r) => r.statusCode).sort(), [200, 200, 201]);
  t.equal(new Set(answers.map((r) => r.json().id)).size, 1, 'one id for all');

  const oneShot = { participants: [{ name: 'orders', url: a.url }], idempotencyKey: 'same-one-shot', commit: true };
  const shots = await Promise.all([1, 2].map(() => post(h, '/v1/transactions', oneShot)));
  t.same(
    shots.map((r) => r.statusCode),
    [200, 200],
  );
  const id = shots[0]?.json().id;
  t.equal(shots[1]?.json().id, id);
  t.equal(a.count('prepare', id), 1, 'one prepare');
  t.equal(a.count('commit', id), 1, 'one commit');
  t.equal((await get(h, '/v1/transactions')).json().transactions.length, 2);
});

t.test('repeats of prepare, commit and abort are safe', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const begun = await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] });
  const id = begun.json().id;
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).statusCode, 200);
  const again = await post(h, `/v1/transactions/${id}/prepare`);
  t.equal(again.statusCode, 200, 'prepare on prepared answers 200');
  t.equal(again.json().state, 'prepared');
  t.equal(a.count('prepare', id), 1, 'and asks nobody again');

  t.equal((await post(h, `/v1/transactions/${id}/commit`)).statusCode, 200);
  await pollTx(h, id, finished);
  for (let i = 0; i < 2; i++) {
    const res = await post(h, `/v1/transactions/${id}/commit`);
    t.equal(res.statusCode, 200, 'commit on committed answers 200 again');
    t.match(res.json(), { id, state: 'committed', outcome: 'commit' });
  }
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).statusCode, 200, 'prepare after commit is a repeat too');
  t.equal(a.count('commit', id), 1, 'repeats send nothing');
  t.equal(a.count('prepare', id), 1);

  const other = (await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] })).json().id;
  t.equal((await post(h, `/v1/transactions/${other}/abort`)).statusCode, 200);
  await pollTx(h, other, finished);
  for (let i = 0; i < 2; i++) {
    const res = await post(h, `/v1/transactions/${other}/abort`);
    t.equal(res.statusCode, 200, 'abort on aborted answers 200 again');
    t.match(res.json(), { id: other, state: 'aborted', outcome: 'abort' });
  }
});

t.test('a one-shot commit repeated with the same idempotency key runs once', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);
  const body = {
    participants: [
      { name: 'orders', url: a.url },
      { name: 'payments', url: b.url },
    ],
    idempotencyKey: 'checkout-42',
    commit: true,
  };
  const first = await post(h, '/v1/transactions', body);
  t.equal(first.statusCode, 200, first.body);
  const id = first.json().id;
  const second = await post(h, '/v1/transactions', body);
  t.equal(second.statusCode, 200, second.body);
  t.match(second.json(), { id, state: 'committed', outcome: 'commit' });
  t.equal(a.count('prepare'), 1, 'one prepare each');
  t.equal(b.count('prepare'), 1);
  t.equal(a.count('commit'), 1);
  t.equal(b.count('commit'), 1);
  problem(t, await post(h, '/v1/transactions', { ...body, commit: false }), 409);
});

t.test('an idempotency key outlives the details of its transaction', async (t) => {
  // Details are forgotten 100 ms after the transaction finishes; keys are kept a day.
  const h = await harness(t, { transactions: { retentionMs: 100 } });
  const a = await participant(t);
  const body = { participants: [{ name: 'orders', url: a.url }], idempotencyKey: 'pay-7', commit: true };
  const first = await post(h, '/v1/transactions', body);
  t.equal(first.statusCode, 200, first.body);
  const id = first.json().id;
  const deadline = Date.now() + 10_000;
  while ((await get(h, `/v1/transactions/${id}`)).statusCode !== 404) {
    if (Date.now() > deadline) throw new Error('the transaction was never compacted');
    await new Promise((r) => setTimeout(r, 20));
  }
  const retry = await post(h, '/v1/transactions', body);
  t.equal(retry.statusCode, 200, retry.body);
  t.match(retry.json(), { id, state: 'committed', outcome: 'commit', idempotencyKey: 'pay-7' });
  t.equal(a.count('prepare'), 1, 'the participants did the work once');
  t.equal(a.count('commit'), 1);
  problem(t, await post(h, '/v1/transactions', { ...body, idempotencyKey: 'pay-7', timeoutMs: 1234 }), 409);
});

t.test('leaving out commit, timeoutMs or participants is the same request as sending their defaults', async (t) => {
  const h = await harness(t);
  const first = await post(h, '/v1/transactions', { idempotencyKey: 'defaults' });
  t.equal(first.statusCode, 201, first.body);
  const spelled = await post(h, '/v1/transactions', {
    idempotencyKey: 'defaults',
    participants: [],
    commit: false,
    timeoutMs: h.config.transactions.defaultTimeoutMs,
  });
  t.equal(spelled.statusCode, 200, spelled.body);
  t.equal(spelled.json().id, first.json().id);
});

t.test('the outcome inquiry: pending, then the decision', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const outcome = async (id: string) => {
    const res = await get(h, `/v1/transactions/${id}/outcome`);
    t.equal(res.statusCode, 200);
    return res.json();
  };
  const id = (await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] })).json().id;
  t.same(await outcome(id), { outcome: 'pending' }, 'active');
  t.equal((await post(h, `/v1/transactions/${id}/prepare`)).statusCode, 200);
  t.same(await outcome(id), { outcome: 'pending' }, 'prepared');
  t.equal((await post(h, `/v1/transactions/${id}/commit`)).statusCode, 200);
  t.same(await outcome(id), { outcome: 'commit' }, 'committed');
  await pollTx(h, id, finished);
  t.same(await outcome(id), { outcome: 'commit' }, 'still commit once finished');

  const other = (await post(h, '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] })).json().id;
  t.equal((await post(h, `/v1/transactions/${other}/prepare`)).statusCode, 200);
  t.equal((await post(h, `/v1/transactions/${other}/abort`)).statusCode, 200);
  t.same(await outcome(other), { outcome: 'abort' }, 'aborted');
});

t.test('list: newest first, paged, filtered by state', async (t) => {
  const h = await harness(t);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await post(h, '/v1/transactions', { participants: [], metadata: { i } });
    t.equal(res.statusCode, 201);
    ids.push(res.json().id);
  }
  const newestFirst = [...ids].reverse();
  const list = async (query: string) => {
    const res = await get(h, `/v1/transactions?${query}`);
    t.equal(res.statusCode, 200, res.body);
    const body = res.json();
    return { ids: body.transactions.map((x: any) => x.id), next: body.next, transactions: body.transactions };
  };

  const all = await list('');
  t.same(all.ids, newestFirst);
  t.equal(all.next, null);
  t.same(
    all.transactions.map((x: any) => x.metadata.i),
    [4, 3, 2, 1, 0],
  );

  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const page = await list(`limit=2${cursor ? `&after=${cursor}` : ''}`);
    pages.push(page.ids);
    cursor = page.next;
    if (cursor !== null) t.equal(cursor, page.ids[page.ids.length - 1], 'the cursor is the last id of the page');
  } while (cursor !== null && pages.length < 10);
  t.same(pages, [newestFirst.slice(0, 2), newestFirst.slice(2, 4), newestFirst.slice(4)]);

  for (const id of [ids[1], ids[3]]) t.equal((await post(h, `/v1/transactions/${id}/commit`)).statusCode, 200);
  const committed = await list('state=committed');
  t.same(committed.ids, [ids[3], ids[1]]);
  t.ok(committed.transactions.every((x: any) => x.state === 'committed'));
  t.same((await list('state=active')).ids, [ids[4], ids[2], ids[0]]);
  const firstActive = await list('state=active&limit=2');
  t.same(firstActive.ids, [ids[4], ids[2]]);
  t.not(firstActive.next, null);
  const restActive = await list(`state=active&limit=2&after=${firstActive.next}`);
  t.same(restActive.ids, [ids[0]]);
  t.equal(restActive.next, null);
  t.same((await list('state=aborted')).ids, []);
});

t.test('operations endpoints', async (t) => {
  const h = await harness(t);
  t.equal((await post(h, '/v1/transactions', { participants: [], commit: true })).statusCode, 200);

  const health = await get(h, '/healthz');
  t.equal(health.statusCode, 200);
  t.equal((await get(h, '/readyz')).statusCode, 200);

  const metrics = await get(h, '/metrics');
  t.equal(metrics.statusCode, 200);
  t.match(metrics.headers['content-type'], /^text\/plain/);
  t.equal(sample(metrics.body, 'commitd_transactions_decided_total', 'outcome="commit",reason=""'), 1);
  t.ok((sample(metrics.body, 'commitd_log_fsyncs_total') ?? 0) >= 1, 'fsyncs are counted');
  const names = [...metrics.body.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1] as string);
  t.ok(names.length > 0);
  t.same(
    names.filter((n) => !n.startsWith('commitd_')),
    [],
    'every metric is prefixed commitd_',
  );

  const docs = await get(h, '/docs/json');
  t.equal(docs.statusCode, 200);
  const openapi = docs.json();
  t.match(openapi.openapi, /^3\./);
  t.ok(openapi.paths['/v1/transactions'], 'documents /v1/transactions');
  t.ok(openapi.paths['/v1/transactions'].post, 'with begin');
  t.ok(openapi.paths['/v1/transactions/{id}'], 'documents /v1/transactions/{id}');
});

t.test('participant requests are signed when a signing secret is configured', async (t) => {
  const secret = 's3cret-0123456789abcdef';
  const h = await harness(t, { participants: { signingSecret: secret } });
  const a = await participant(t);
  const startedAt = Date.now();
  const res = await post(h, '/v1/transactions', {
    participants: [{ name: 'orders', url: a.url, payload: { x: 1 } }],
    commit: true,
  });
  t.equal(res.statusCode, 200, res.body);
  t.same(
    a.received.map((m) => m.action),
    ['prepare', 'commit'],
  );
  for (const m of a.received) {
    const timestamp = m.headers['x-commitd-timestamp'];
    const signature = m.headers['x-commitd-signature'];
    t.type(timestamp, 'string', `${m.action}: carries a timestamp`);
    t.type(signature, 'string', `${m.action}: carries a signature`);
    const signed = `v1\n${timestamp}\nPOST\n/tx/${m.action}\n${res.json().id}\n${m.rawBody}`;
    const expected = `v1=${createHmac('sha256', secret).update(signed).digest('hex')}`;
    t.equal(signature, expected, `${m.action}: HMAC-SHA256 over v1, timestamp, method, path, id and body`);
    const wrong = `v1=${createHmac('sha256', 'other').update(signed).digest('hex')}`;
    t.not(signature, wrong, `${m.action}: depends on the secret`);
    t.ok(
      Number(timestamp) >= startedAt - 1000 && Number(timestamp) <= Date.now() + 1000,
      `${m.action}: timestamp is now`,
    );
    t.equal(m.headers['x-commitd-transaction'], res.json().id);
  }
});

t.test('bearer authentication when an auth token is configured', async (t) => {
  const token = 'let-me-in-0123456789';
  const h = await harness(t, { server: { authToken: token } });
  const begin = (headers?: Record<string, string>) => post(h, '/v1/transactions', { participants: [] }, headers);

  const none = await begin();
  problem(t, none, 401);
  t.match(none.headers['www-authenticate'], /^Bearer/);
  problem(t, await begin({ authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` }), 401);
  // An unknown token is no identity at all: 401, like none (403 is for a known token without the right).
  problem(t, await begin({ authorization: 'Bearer wrong' }), 401);
  problem(t, await begin({ authorization: `Bearer ${token}x` }), 401);
  problem(t, await get(h, '/v1/transactions'), 401);

  const ok = await begin({ authorization: `Bearer ${token}` });
  t.equal(ok.statusCode, 201, ok.body);
  const id = ok.json().id;
  t.equal((await get(h, `/v1/transactions/${id}`, { authorization: `Bearer ${token}` })).statusCode, 200);
  const listed = await get(h, '/v1/transactions', { authorization: `Bearer ${token}` });
  t.same(
    listed.json().transactions.map((x: any) => x.id),
    [id],
    'refused requests created nothing',
  );
  t.equal((await get(h, '/healthz')).statusCode, 200, '/healthz needs no token');
  t.equal((await get(h, '/readyz')).statusCode, 200, '/readyz needs no token');
});
