// Nobody exhausts commitd for others (issue 9): work that can never end does
// not hold the capacity new work needs, also not after a restart, and memory
// is bounded by bytes, not only by count.

import t, { type Test } from 'tap';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';

async function harness(t: Test, overrides: Overrides = {}, dataDir?: string): Promise<Harness> {
  const h = await startHarness(overrides, dataDir);
  t.teardown(() => h.close());
  return h;
}

async function participant(t: Test): Promise<TestParticipant> {
  const p = await startParticipant();
  t.teardown(() => p.close());
  return p;
}

function post(h: Harness, url: string, payload?: object) {
  return h.app.inject({ method: 'POST', url, payload });
}

t.test('an abort calls nobody who was never asked to prepare', async (t) => {
  const h = await harness(t);
  const p = await participant(t);
  const byDeadline = (
    await post(h, '/v1/transactions', { participants: [{ name: 'p', url: p.url }], timeoutMs: 150 })
  ).json().id;
  const byClient = (await post(h, '/v1/transactions', { participants: [{ name: 'p', url: p.url }] })).json().id;
  const aborted = await post(h, `/v1/transactions/${byClient}/abort`);
  t.equal(aborted.statusCode, 200);
  t.equal(aborted.json().state, 'aborted', 'finished at once: there is nobody to tell');
  await waitUntil(async () => (await h.coordinator.reads.outcome(byDeadline)) === 'abort', 5_000, 'the deadline abort');
  const read = (await h.app.inject({ method: 'GET', url: `/v1/transactions/${byDeadline}` })).json();
  t.match(read, { state: 'aborted', abortReason: 'deadline' });
  await new Promise((r) => setTimeout(r, 200));
  t.same(p.received, [], 'the participant never heard of either transaction');
});

t.test('transactions left only delivering phase two hold no capacity, also after a restart', async (t) => {
  // One caller here: its own limits (issue 23) set past the global ones, which this is about.
  const limits = { transactions: { maxInFlight: 2, maxInFlightPerCaller: 100 } };
  // Closed by the test itself, to restart on its data directory.
  const h = await startHarness(limits);
  // Votes yes, then can never be reached with the commit.
  const p = await startParticipant((m) => (m.action === 'commit' ? { status: 503 } : undefined));
  t.teardown(() => p.close());
  const participants = [{ name: 'p', url: p.url }];
  for (let i = 0; i < 2; i++) {
    const res = await post(h, '/v1/transactions', { participants, commit: true });
    t.equal(res.statusCode, 202, 'decided commit, not acknowledged');
  }
  t.equal(h.coordinator.inFlight, 2, 'both are still in memory, being retried');
  const third = await post(h, '/v1/transactions', { participants });
  t.equal(third.statusCode, 201, 'a new transaction is still accepted');
  const fourth = await post(h, '/v1/transactions', { participants });
  t.equal(fourth.statusCode, 201);
  const fifth = await post(h, '/v1/transactions', { participants });
  t.equal(fifth.statusCode, 503, 'two undecided ones are the limit');
  t.equal(fifth.headers['retry-after'], '1');

  await h.close();
  const restarted = await harness(t, limits, h.dataDir);
  t.equal(restarted.coordinator.inFlight, 4, 'all four recovered');
  await post(restarted, `/v1/transactions/${third.json().id}/abort`);
  await post(restarted, `/v1/transactions/${fourth.json().id}/abort`);
  const after = await post(restarted, '/v1/transactions', { participants });
  t.equal(after.statusCode, 201, 'after a restart the decided ones still hold no capacity');
});

t.test('payload and metadata in memory are bounded by bytes; a decided transaction drops its payloads', async (t) => {
  const h = await harness(t, {
    // One caller here: its own byte limit (issue 23) set to the global one, which this is about.
    transactions: { maxInFlightBytes: 4096, maxPayloadBytes: 4096, maxInFlightBytesPerCaller: 4096 },
  });
  const p = await participant(t);
  const big = { blob: 'x'.repeat(3000) };
  const first = await post(h, '/v1/transactions', { participants: [{ name: 'p', url: p.url, payload: big }] });
  t.equal(first.statusCode, 201);
  const refused = await post(h, '/v1/transactions', { participants: [{ name: 'p', url: p.url, payload: big }] });
  t.equal(refused.statusCode, 503, 'over the bytes in flight');
  t.equal(refused.headers['retry-after'], '1');
  t.match(refused.json().detail, /bytes of payload and metadata/);
  const enlist = await post(h, `/v1/transactions/${first.json().id}/participants`, {
    name: 'q',
    url: p.url,
    payload: big,
  });
  t.equal(enlist.statusCode, 503, 'an enlistment is bounded the same way');
  t.equal((await post(h, `/v1/transactions/${first.json().id}/commit`)).statusCode, 200, 'the first commits');
  t.same(p.received[0]?.body.payload, big, 'its participant got its payload');
  const second = await post(h, '/v1/transactions', { participants: [{ name: 'p', url: p.url, payload: big }] });
  t.equal(second.statusCode, 201, 'once decided, its payload no longer counts');
});

t.test('one caller cannot take the in-flight capacity of others', async (t) => {
  const h = await harness(t, { transactions: { maxInFlightPerCaller: 1 } });
  // Without tokens a caller is its address.
  const begin = (address: string) =>
    h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, remoteAddress: address });
  const first = await begin('10.0.0.1');
  t.equal(first.statusCode, 201);
  const again = await begin('10.0.0.1');
  t.equal(again.statusCode, 503, 'its own limit reached');
  t.equal(again.headers['retry-after'], '1');
  t.match(again.json().detail, /of this caller/);
  t.equal((await begin('10.0.0.2')).statusCode, 201, 'another caller goes on');
  await post(h, `/v1/transactions/${first.json().id}/abort`);
  t.equal((await begin('10.0.0.1')).statusCode, 201, 'decided work frees its place');
});

// Issue 23: the per-caller limits have non-zero defaults (a quarter of the
// global ones), count the bytes and the decided work still owed phase two,
// and are rebuilt from the log at a restart.

function beginAs(h: Harness, address: string, payload: object = {}) {
  return h.app.inject({ method: 'POST', url: '/v1/transactions', payload, remoteAddress: address });
}

t.test('by default one caller may hold a quarter of the undecided limit', async (t) => {
  const h = await harness(t, { transactions: { maxInFlight: 8 } });
  for (let i = 0; i < 2; i++) t.equal((await beginAs(h, '10.0.0.1')).statusCode, 201, `begin ${i + 1}`);
  const third = await beginAs(h, '10.0.0.1');
  t.equal(third.statusCode, 503, 'its share (8 / 4) reached');
  t.match(third.json().detail, /2 undecided transactions of this caller/);
  t.equal((await beginAs(h, '10.0.0.2')).statusCode, 201, 'another caller still begins');
});

t.test('by default one caller may hold a quarter of the payload bytes', async (t) => {
  const h = await harness(t, { transactions: { maxInFlightBytes: 4096 } });
  const p = await participant(t);
  const payload = { blob: 'x'.repeat(700) };
  const body = { participants: [{ name: 'p', url: p.url, payload }] };
  t.equal((await beginAs(h, '10.0.0.1', body)).statusCode, 201);
  const second = await beginAs(h, '10.0.0.1', body);
  t.equal(second.statusCode, 503, 'past its 1024 bytes');
  t.match(second.json().detail, /1024 bytes of payload and metadata of this caller/);
  t.equal((await beginAs(h, '10.0.0.2', body)).statusCode, 201, 'another caller still begins');
});

t.test('decided work a participant never acknowledges counts against its caller', async (t) => {
  const h = await harness(t, { transactions: { maxInFlightPerCaller: 2 } });
  const down = await startParticipant((m) => (m.action === 'commit' ? { status: 503 } : undefined));
  t.teardown(() => down.close());
  const oneShot = { participants: [{ name: 'p', url: down.url }], commit: true };
  for (let i = 0; i < 2; i++) {
    const res = await beginAs(h, '10.0.0.1', oneShot);
    t.equal(res.statusCode, 202, 'decided, its commit not acknowledged');
  }
  const third = await beginAs(h, '10.0.0.1', oneShot);
  t.equal(third.statusCode, 503);
  t.match(third.json().detail, /still delivering their outcome/);
  t.equal((await beginAs(h, '10.0.0.2', oneShot)).statusCode, 202, 'another caller still goes on');
});

t.test('after a restart the per-caller counts are rebuilt from the log', async (t) => {
  const first = await startHarness({ transactions: { maxInFlightPerCaller: 2 } });
  for (let i = 0; i < 2; i++) t.equal((await beginAs(first, '10.0.0.1')).statusCode, 201);
  await first.close();
  const h = await harness(t, { transactions: { maxInFlightPerCaller: 2 } }, first.dataDir);
  t.equal(h.coordinator.inFlight, 2, 'both came back');
  const again = await beginAs(h, '10.0.0.1');
  t.equal(again.statusCode, 503, 'still its two');
  t.match(again.json().detail, /of this caller/);
  t.equal((await beginAs(h, '10.0.0.2')).statusCode, 201, 'another caller begins');
});
