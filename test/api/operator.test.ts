// What operators see and do, end to end in process against real HTTP test
// participants: a transaction's history, "retry now", an admin's abort,
// resolving a heuristic, the list's filters, the overview's figures and the
// metrics behind the alerts; and that only admins may do any of it.

import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { type Harness, startHarness } from '../support/harness.js';
import { type Behavior, startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';

/** Polls an async condition, bounded. */
async function until(predicate: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ADMIN = 'admin-token-0123456789abcdef';
const CLIENT = 'client-token-0123456789abcdef';
const TOKENS = [`admin:${ADMIN}`, `client:${CLIENT}`];
const STUCK_AFTER = 3;

async function harness(t: Test): Promise<Harness> {
  const h = await startHarness({
    server: { tokens: TOKENS },
    participants: { stuckAfterAttempts: STUCK_AFTER, retryDelayMsMin: 10, retryDelayMsMax: 100 },
  });
  t.teardown(() => h.close(true));
  return h;
}

async function participant(t: Test, behavior: Behavior | null = null): Promise<TestParticipant> {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

const as = (token: string) => ({ authorization: `Bearer ${token}` });

function call(h: Harness, method: 'GET' | 'POST', url: string, token = ADMIN, payload?: object) {
  return h.app.inject({ method, url, payload, headers: as(token) });
}

function json(t: Test, res: LightMyRequestResponse, status: number): any {
  t.equal(res.statusCode, status, res.body);
  return res.json();
}

async function begin(h: Harness, participants: TestParticipant[], commit = true, token = CLIENT) {
  const res = await call(h, 'POST', '/v1/transactions', token, {
    participants: participants.map((p, i) => ({ name: `p${i}`, url: p.url })),
    commit,
  });
  return res.json();
}

async function history(t: Test, h: Harness, id: string): Promise<any[]> {
  return json(t, await call(h, 'GET', `/v1/transactions/${id}/history`), 200).entries;
}

/** Fails phase two (commit or abort) while `down` is true; votes yes. */
function flaky(state: { down: boolean }): Behavior {
  return (m) => (m.action !== 'prepare' && state.down ? { status: 503, body: {} } : undefined);
}

t.test('a committed transaction tells its story in order, with who began it', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const b = await participant(t);
  const tx = await begin(h, [a, b]);
  t.equal(tx.state, 'committed');
  await until(async () => (await history(t, h, tx.id)).some((e) => e.type === 'finished'));
  const entries = await history(t, h, tx.id);
  t.same(
    entries.map((e) => e.type),
    ['begun', 'voted', 'voted', 'decided', 'acknowledged', 'acknowledged', 'finished'],
  );
  t.match(entries[0], { type: 'begun', oneShot: true, participants: ['p0', 'p1'], by: { role: 'client' } });
  t.type(entries[0].by.tokenId, 'string', "the token's id, never the token");
  t.notOk(JSON.stringify(entries).includes(CLIENT), 'no token in the history');
  t.match(entries[1], { type: 'voted', vote: 'yes', latencyMs: Number });
  t.match(entries[3], { type: 'decided', outcome: 'commit', reason: 'all-voted-yes' });
  for (const e of entries) t.ok(!Number.isNaN(Date.parse(e.at)), `${e.type} has a time`);
  const times = entries.map((e) => Date.parse(e.at));
  t.same(
    times,
    [...times].sort((x, y) => x - y),
    'oldest first',
  );

  const notFound = await call(h, 'GET', '/v1/transactions/tx_01ARZ3NDEKTSV4RRFFQ69G5FAV/history');
  t.equal(notFound.statusCode, 404);
  t.equal((await call(h, 'GET', `/v1/transactions/${tx.id}/history`, CLIENT)).statusCode, 403, 'admins only');
  t.equal((await h.app.inject({ method: 'GET', url: `/v1/transactions/${tx.id}/history` })).statusCode, 401);
});

t.test('the history survives a restart, and says the transaction was recovered', async (t) => {
  const state = { down: true };
  const a = await participant(t, flaky(state));
  const h = await startHarness({ server: { tokens: TOKENS } });
  const tx = await begin(h, [a]);
  t.equal(tx.state, 'committing');
  await until(async () => (await history(t, h, tx.id)).some((e) => e.type === 'delivery-failed'));
  await h.close();
  state.down = false;
  const again = await startHarness({ server: { tokens: TOKENS } }, h.dataDir);
  t.teardown(() => again.close(true));
  await until(async () => (await history(t, again, tx.id)).some((e) => e.type === 'finished'));
  const types = (await history(t, again, tx.id)).map((e) => e.type);
  t.ok(types.indexOf('begun') === 0, 'what the first run recorded is still there');
  t.ok(types.includes('delivery-failed'));
  t.ok(types.indexOf('recovered') > types.indexOf('delivery-failed'), 'then the restart');
  t.ok(types.indexOf('acknowledged') > types.indexOf('recovered'), 'then the acknowledgement');
});

t.test('retry now: a stuck participant hears at once, backoff reset; listed as stuck until then', async (t) => {
  const h = await harness(t);
  const state = { down: true };
  const a = await participant(t, flaky(state));
  const ok = await participant(t);
  const tx = await begin(h, [a, ok]);
  t.equal(tx.state, 'committing');
  await waitUntil(() => a.count('commit', tx.id) > STUCK_AFTER);
  await until(async () => (await call(h, 'GET', '/v1/stats')).json().stuckParticipants === 1);

  const stuck = json(t, await call(h, 'GET', '/v1/transactions?stuck=true'), 200);
  t.same(
    stuck.transactions.map((x: any) => x.id),
    [tx.id],
    'listed as stuck',
  );
  t.ok(stuck.transactions[0].participants[0].attempts >= STUCK_AFTER);
  t.match(stuck.transactions[0].participants[0].lastError, /503/);
  const done = await begin(h, [ok]);
  t.notOk(
    json(t, await call(h, 'GET', '/v1/transactions?stuck=true'), 200).transactions.some((x: any) => x.id === done.id),
    'a finished one is not',
  );

  state.down = false;
  const before = a.count('commit', tx.id);
  const retried = await call(h, 'POST', `/v1/transactions/${tx.id}/retry`);
  t.equal(retried.statusCode, 202, retried.body);
  t.match((await call(h, 'GET', '/metrics')).body, /commitd_operator_actions_total\{action="retry"\} 1\b/, 'counted');
  await until(async () => (await call(h, 'GET', `/v1/transactions/${tx.id}`)).json().state === 'committed', 2000);
  t.ok(a.count('commit', tx.id) > before, 'the participant heard the commit again');
  const types = (await history(t, h, tx.id)).map((e) => e.type);
  t.ok(types.includes('operator-retry'), 'the retry is in the history');
  t.ok(types.lastIndexOf('acknowledged') > types.indexOf('operator-retry'));
  const again = await call(h, 'POST', `/v1/transactions/${tx.id}/retry`);
  t.equal(again.statusCode, 200, 'finished: nothing to retry, nothing wrong either');
  t.equal((await call(h, 'POST', `/v1/transactions/${tx.id}/retry`, CLIENT)).statusCode, 403, 'admins only');
});

t.test('retry now is refused with 409 while undecided; an admin abort aborts it as an operator', async (t) => {
  const h = await harness(t);
  const slow = await participant(t, (m) => (m.action === 'prepare' ? 'hang' : undefined));
  const tx = await begin(h, [slow], false);
  const prepare = call(h, 'POST', `/v1/transactions/${tx.id}/prepare`, CLIENT);
  await waitUntil(() => slow.count('prepare', tx.id) === 1);
  const refused = await call(h, 'POST', `/v1/transactions/${tx.id}/retry`);
  const problem = json(t, refused, 409);
  t.equal(problem.type, 'urn:commitd:problem:transaction-not-decided');
  t.equal(problem.title, 'The transaction is not decided: there is no phase two to retry');
  t.equal(problem.transaction.state, 'preparing');

  const aborted = json(t, await call(h, 'POST', `/v1/transactions/${tx.id}/abort`), 200);
  t.equal(aborted.outcome, 'abort');
  t.equal(aborted.abortReason, 'operator');
  await prepare;
  const entries = await history(t, h, tx.id);
  t.match(
    entries.find((e) => e.type === 'requested' && e.action === 'abort'),
    { by: { role: 'admin' } },
  );
  t.match(
    entries.find((e) => e.type === 'decided'),
    { outcome: 'abort', reason: 'operator' },
  );
  t.match((await call(h, 'GET', '/metrics')).body, /commitd_operator_actions_total\{action="abort"\} 1\b/);

  const committed = await begin(h, [await participant(t)]);
  const late = json(t, await call(h, 'POST', `/v1/transactions/${committed.id}/abort`), 409);
  t.equal(late.type, 'urn:commitd:problem:transaction-committed', 'refused once a commit is decided');
  t.match(
    (await call(h, 'GET', '/metrics')).body,
    /commitd_operator_actions_total\{action="abort"\} 1\b/,
    'not counted',
  );

  const byClient = await begin(h, [slow], false);
  const clientAbort = json(t, await call(h, 'POST', `/v1/transactions/${byClient.id}/abort`, CLIENT), 200);
  t.equal(clientAbort.abortReason, 'client', "a client's abort is the client's");
});

t.test('a contradicting heuristic: counted, listed, kept, then resolved by an admin with a note', async (t) => {
  const h = await harness(t);
  const rogue = await participant(t, (m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  const fine = await participant(t);
  const tx = await begin(h, [rogue, fine]);
  await until(async () => (await call(h, 'GET', `/v1/transactions/${tx.id}`)).json().state === 'committed');
  await until(async () => (await call(h, 'GET', '/v1/stats')).json().unresolvedHeuristics === 1);
  await until(async () => /commitd_heuristics_unresolved 1\b/.test((await call(h, 'GET', '/metrics')).body));
  const listed = json(t, await call(h, 'GET', '/v1/transactions?heuristic=unresolved'), 200);
  t.same(
    listed.transactions.map((x: any) => x.id),
    [tx.id],
  );
  t.equal(listed.transactions[0].mixedOutcome, true);

  const bad = await call(h, 'POST', `/v1/transactions/${tx.id}/resolve`, ADMIN, { note: '' });
  t.equal(bad.statusCode, 400, 'a note is required');
  const none = await call(h, 'POST', `/v1/transactions/${tx.id}/resolve`, ADMIN, { note: 'x', participant: 'p1' });
  t.equal(json(t, none, 409).type, 'urn:commitd:problem:nothing-to-resolve', 'p1 agreed with the decision');
  t.equal((await call(h, 'POST', `/v1/transactions/${tx.id}/resolve`, CLIENT, { note: 'x' })).statusCode, 403);

  const resolved = json(
    t,
    await call(h, 'POST', `/v1/transactions/${tx.id}/resolve`, ADMIN, { note: 'refunded order 7 by hand' }),
    200,
  );
  t.match(resolved.participants[0], { heuristic: 'abort', heuristicResolved: { note: 'refunded order 7 by hand' } });
  t.type(resolved.participants[0].heuristicResolved.by, 'string');
  t.equal(json(t, await call(h, 'GET', '/v1/stats'), 200).unresolvedHeuristics, 0);
  t.same(json(t, await call(h, 'GET', '/v1/transactions?heuristic=unresolved'), 200).transactions, []);
  const entries = await history(t, h, tx.id);
  t.match(entries.at(-1), { type: 'heuristic-resolved', participant: 'p0', note: 'refunded order 7 by hand' });
  t.match((await call(h, 'GET', '/metrics')).body, /commitd_operator_actions_total\{action="resolve"\} 1\b/);
  const twice = await call(h, 'POST', `/v1/transactions/${tx.id}/resolve`, ADMIN, { note: 'again' });
  t.equal(twice.statusCode, 409, 'resolved once only');
});

t.test('list filters: participant name, age; bad filters are a 400 that changes nothing', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const first = await begin(h, [a]);
  await new Promise((r) => setTimeout(r, 1000));
  const second = await call(h, 'POST', '/v1/transactions', CLIENT, {
    participants: [{ name: 'payments', url: a.url }],
    commit: true,
  });
  const ids = async (query: string) =>
    json(t, await call(h, 'GET', `/v1/transactions?${query}`), 200).transactions.map((x: any) => x.id);
  t.same(await ids('participant=payments'), [second.json().id]);
  t.same(await ids('participant=p0'), [first.id]);
  // The cutoff halfway between the two begins, as an age: half a second of margin either side.
  const halfway = (Date.parse(first.createdAt) + Date.parse(second.json().createdAt)) / 2;
  const olderThanMs = Math.round(Date.now() - halfway);
  t.same(await ids(`olderThanMs=${olderThanMs}`), [first.id], 'only the one created before the cutoff');
  t.same(await ids('olderThanMs=0&state=committed'), [second.json().id, first.id], 'filters combine');
  for (const query of ['stuck=maybe', 'heuristic=resolved', 'olderThanMs=-1', 'participant=%20x', 'olderThanMs=abc']) {
    const res = await call(h, 'GET', `/v1/transactions?${query}`);
    t.equal(res.statusCode, 400, query);
    t.match(res.headers['content-type'], /problem\+json/);
  }
});

t.test('stats: in flight by state, decisions per second, the oldest unfinished', async (t) => {
  const h = await harness(t);
  const a = await participant(t);
  const empty = json(t, await call(h, 'GET', '/v1/stats'), 200);
  t.same(empty.inFlight, { active: 0, preparing: 0, prepared: 0, committing: 0, aborting: 0 });
  t.equal(empty.oldestUnfinished, null);
  t.equal(empty.stuckAfterAttempts, STUCK_AFTER);
  for (let i = 0; i < 5; i++) await begin(h, [a]);
  const open = await begin(h, [a], false);
  const stats = json(t, await call(h, 'GET', '/v1/stats'), 200);
  t.equal(stats.inFlight.active, 1);
  t.equal(stats.decidedPerSecond.commit, 0.5, 'five commits over the ten-second window');
  t.match(stats.oldestUnfinished, { id: open.id, state: 'active', ageMs: Number });
  await until(async () =>
    /commitd_oldest_unfinished_transaction_age_seconds [0-9.e-]+/.test((await call(h, 'GET', '/metrics')).body),
  );
  t.equal((await call(h, 'GET', '/v1/stats', CLIENT)).statusCode, 403, 'admins only');
});
