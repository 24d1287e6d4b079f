// The kit against a real commitd process, and against raw protocol messages
// over real sockets: commits, no votes, repeats of every message, abort
// before prepare, prepare after abort, a failure inside the service's
// prepare, signatures, the outcome inquiry, retention and the stale report.

import http from 'node:http';
import t from 'tap';
import { signV1 } from '../../src/kit/signature.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startService } from '../support/service.js';
import { send, startStockService } from './stock.js';

const commitd = await startService(tempDir());
t.teardown(() => commitd.kill('SIGTERM'));

const begin = (participants: unknown[], extra = {}) =>
  call(commitd.url, 'POST', '/v1/transactions', { participants, commit: true, ...extra });

t.test('a one-shot commit across two kit participants', async (t) => {
  const a = await startStockService(tempDir());
  const b = await startStockService(tempDir());
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const res = await begin([
    { name: 'warehouse-a', url: a.url, payload: { sku: 'apple', qty: 3 } },
    { name: 'warehouse-b', url: b.url, payload: { sku: 'apple', qty: 2 } },
  ]);
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.equal(res.body.state, 'committed');
  t.equal(a.available('apple'), 7);
  t.equal(b.available('apple'), 8);
  t.equal(a.reserved('apple'), 0);
  t.match(a.record(res.body.id, 'warehouse-a'), { state: 'committed', vote: 'yes' });
  t.same(a.calls, { prepare: 1, commit: 1, abort: 0 });
});

t.test('a no vote rolls back the service change and aborts the transaction', async (t) => {
  const a = await startStockService(tempDir());
  const b = await startStockService(tempDir());
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const res = await begin([
    { name: 'a', url: a.url, payload: { sku: 'apple', qty: 1 } },
    { name: 'b', url: b.url, payload: { sku: 'pear', qty: 5 } },
  ]);
  t.equal(res.status, 409);
  t.equal(res.body.transaction.outcome, 'abort');
  t.match(res.body.transaction.participants[1], { vote: 'no', reason: 'not enough pear' });
  t.equal(b.reserved('pear'), 0, 'the no voter kept nothing');
  t.match(b.record(res.body.transaction.id, 'b'), { state: 'aborted', vote: 'no', reason: 'not enough pear' });
  await t.resolves(
    (async () => {
      const deadline = Date.now() + 5000;
      while (a.record(res.body.transaction.id, 'a')?.state !== 'aborted' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
    })(),
  );
  t.match(a.record(res.body.transaction.id, 'a'), { state: 'aborted', vote: 'yes' }, 'the yes voter heard abort');
  t.equal(a.reserved('apple'), 0, 'and released its reservation');
  t.equal(a.available('apple'), 10);
});

t.test('every message repeated is answered from the record, without the service', async (t) => {
  const events: string[] = [];
  const s = await startStockService(tempDir(), {
    hooks: { onMessage: (e) => events.push(`${e.action}:${e.result}:${e.repeat ? 'repeat' : 'first'}:${e.status}`) },
  });
  t.teardown(() => s.close());
  const m = { transactionId: 'tx_repeat', participant: 'p', payload: { sku: 'apple', qty: 1 } };
  t.same((await send(s.url, 'prepare', m)).body, { vote: 'yes' });
  t.same((await send(s.url, 'prepare', m)).body, { vote: 'yes' });
  t.equal(s.calls.prepare, 1);
  t.equal(s.reserved('apple'), 1, 'reserved once');
  t.equal((await send(s.url, 'commit', m)).status, 200);
  t.equal((await send(s.url, 'commit', m)).status, 200);
  t.same((await send(s.url, 'prepare', m)).body, { vote: 'yes' }, 'a late prepare repeat after commit');
  t.same(await send(s.url, 'abort', m), { status: 409, body: { heuristic: 'commit' } }, 'abort after commit');
  t.same(s.calls, { prepare: 1, commit: 1, abort: 0 });
  t.equal(s.available('apple'), 9, 'taken once');
  t.same(
    events,
    [
      'prepare:yes:first:200',
      'prepare:yes:repeat:200',
      'commit:committed:first:200',
      'commit:committed:repeat:200',
      'prepare:yes:repeat:200',
      'abort:refused:repeat:409',
    ],
    'the metrics hook sees every answer, repeats marked',
  );

  const n = { transactionId: 'tx_repeat_no', participant: 'p', payload: { sku: 'pear', qty: 9 } };
  t.match((await send(s.url, 'prepare', n)).body, { vote: 'no' });
  t.match((await send(s.url, 'prepare', n)).body, { vote: 'no', reason: 'not enough pear' });
  t.equal((await send(s.url, 'abort', n)).status, 200);
  t.equal((await send(s.url, 'abort', n)).status, 200);
  t.same(await send(s.url, 'commit', n), { status: 409, body: { heuristic: 'abort' } }, 'commit after no');
  t.same(s.calls, { prepare: 2, commit: 1, abort: 0 }, 'the no voter was asked once, its abort needs no callback');
});

t.test('a repeat that arrives while the first prepare is in flight waits for it', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  let open!: () => void;
  s.gate = new Promise((r) => {
    open = r;
  });
  const m = { transactionId: 'tx_concurrent', participant: 'p', payload: { sku: 'apple', qty: 2 } };
  const first = send(s.url, 'prepare', m);
  const second = send(s.url, 'prepare', m);
  await new Promise((r) => setTimeout(r, 100));
  open();
  t.same([(await first).body, (await second).body], [{ vote: 'yes' }, { vote: 'yes' }]);
  t.equal(s.calls.prepare, 1);
  t.equal(s.reserved('apple'), 2);
});

t.test('abort before prepare leaves a tombstone; the late prepare votes no', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  const m = { transactionId: 'tx_early_abort', participant: 'p', payload: { sku: 'apple', qty: 1 } };
  t.equal((await send(s.url, 'abort', m)).status, 200);
  t.match(s.record('tx_early_abort', 'p'), { state: 'aborted', vote: null });
  t.match((await send(s.url, 'prepare', m)).body, { vote: 'no' });
  t.equal(s.calls.prepare, 0, 'the service never heard of it');
  t.equal(s.reserved('apple'), 0);
  t.equal((await send(s.url, 'commit', m)).status, 409, 'nor commits it');
});

t.test('a prepare after its abort votes no, the abort released the change', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  const m = { transactionId: 'tx_abort_then_prepare', participant: 'p', payload: { sku: 'apple', qty: 4 } };
  t.same((await send(s.url, 'prepare', m)).body, { vote: 'yes' });
  t.equal(s.reserved('apple'), 4);
  t.equal((await send(s.url, 'abort', m)).status, 200);
  t.equal(s.reserved('apple'), 0);
  t.match((await send(s.url, 'prepare', m)).body, { vote: 'no' });
  t.same(s.calls, { prepare: 1, commit: 0, abort: 1 });
  t.equal((await send(s.url, 'commit', m)).status, 409, 'commit after abort: heuristic abort, nothing done');
  t.equal(s.available('apple'), 10);
});

t.test('commit without a prepare is refused and changes nothing', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  const res = await send(s.url, 'commit', { transactionId: 'tx_never', participant: 'p' });
  t.equal(res.status, 404);
  t.equal(s.calls.commit, 0);
  t.equal(s.record('tx_never', 'p'), undefined);
});

t.test('a failure inside the service prepare leaves no record and no change; commitd aborts', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  s.failPrepare = true;
  const res = await begin([{ name: 'p', url: s.url, payload: { sku: 'apple', qty: 1 } }]);
  t.equal(res.status, 409);
  const id = res.body.transaction.id;
  t.equal(s.calls.prepare, 1);
  t.equal(s.reserved('apple'), 0, 'the reservation written before the failure was rolled back');
  t.equal((s.db.prepare('SELECT count(*) AS n FROM reservation').get() as { n: number }).n, 0);
  const deadline = Date.now() + 5000;
  while (s.record(id, 'p') === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.match(s.record(id, 'p'), { state: 'aborted', vote: null }, 'only the tombstone of commitd abort');
});

t.test('bad bodies are 400 problem documents and change nothing', async (t) => {
  const s = await startStockService(tempDir());
  t.teardown(() => s.close());
  for (const body of ['{', '[]', '{"transactionId": 5, "participant": "p"}', '{"transactionId": "tx"}', 'null']) {
    const res = await send(s.url, 'prepare', body);
    t.equal(res.status, 400, body);
    t.match(res.body, { type: 'urn:commitd:problem:invalid-request', status: 400 });
  }
  const mismatch = await send(
    s.url,
    'prepare',
    { transactionId: 'tx_a', participant: 'p' },
    {
      'x-commitd-transaction': 'tx_b',
    },
  );
  t.equal(mismatch.status, 400, 'header and body name different transactions');
  t.equal((await send(s.url, 'other', {})).status, 404);
  const big = await send(
    s.url,
    'prepare',
    `{"transactionId":"tx_big","participant":"p","payload":"${'x'.repeat(1024 * 1024)}"}`,
  );
  t.equal(big.status, 413);
  t.equal(big.body.type, 'urn:commitd:problem:too-large');
  t.equal(s.calls.prepare, 0);
  t.equal((s.db.prepare('SELECT count(*) AS n FROM commitd_participant').get() as { n: number }).n, 0);
});

t.test('with a secret: unsigned, wrong, too old and misbound calls are refused (401), signed ones pass', async (t) => {
  const secret = 'kit-secret';
  const s = await startStockService(tempDir(), { signingSecret: secret });
  t.teardown(() => s.close());
  const m = { transactionId: 'tx_signed', participant: 'p', payload: { sku: 'apple', qty: 1 } };
  const body = JSON.stringify(m);
  const signed = (action: string, timestamp = String(Date.now()), txId = m.transactionId, path = `/tx/${action}`) => ({
    'x-commitd-transaction': txId,
    'x-commitd-timestamp': timestamp,
    'x-commitd-signature': `v1=${signV1(secret, { method: 'POST', path, transactionId: txId, timestamp, body })}`,
  });
  const refusals: Array<[string, Record<string, string>]> = [
    ['unsigned', { 'x-commitd-transaction': m.transactionId }],
    ['wrong secret', { ...signed('prepare'), 'x-commitd-signature': `v1=${'ab'.repeat(32)}` }],
    ['too old', signed('prepare', String(Date.now() - 6 * 60_000))],
    ['signed for commit, sent to prepare', signed('prepare', undefined, undefined, '/tx/commit')],
    ['old format', { ...signed('prepare'), 'x-commitd-signature': 'sha256=00' }],
  ];
  for (const [why, headers] of refusals) {
    const res = await send(s.url, 'prepare', body, headers);
    t.equal(res.status, 401, why);
    t.equal(res.body.type, 'urn:commitd:problem:unauthorized', why);
  }
  t.equal(s.calls.prepare, 0, 'no refused call reached the service');
  t.equal(s.record(m.transactionId, 'p'), undefined);
  t.same((await send(s.url, 'prepare', body, signed('prepare'))).body, { vote: 'yes' });
  t.equal((await send(s.url, 'commit', body, signed('prepare'))).status, 401, 'a prepare signature replayed on commit');
  t.equal((await send(s.url, 'commit', body, signed('commit'))).status, 200);
  t.equal(s.available('apple'), 9);
});

t.test('the outcome inquiry finishes a prepared transaction with commitd answer, never on its own', async (t) => {
  const inquiries: string[] = [];
  const s = await startStockService(tempDir(), {
    coordinatorUrl: commitd.url,
    inquireAfterMs: 0,
    hooks: { onInquiry: (e) => inquiries.push(`${e.transactionId}:${e.outcome}`) },
  });
  t.teardown(() => s.close());
  // A transaction commitd committed, whose commit this participant never heard.
  const committed = await begin([]);
  t.equal(committed.body.state, 'committed');
  const id = committed.body.id;
  t.same(
    (await send(s.url, 'prepare', { transactionId: id, participant: 'p', payload: { sku: 'apple', qty: 1 } })).body,
    {
      vote: 'yes',
    },
  );
  // One commitd has no record of: presumed abort.
  const unknown = `tx_${'0'.repeat(26)}`;
  await send(s.url, 'prepare', { transactionId: unknown, participant: 'p', payload: { sku: 'apple', qty: 2 } });
  // One still undecided: pending, stays prepared.
  const open = await call(commitd.url, 'POST', '/v1/transactions', { participants: [], timeoutMs: 60_000 });
  await send(s.url, 'prepare', { transactionId: open.body.id, participant: 'p', payload: { sku: 'apple', qty: 3 } });
  await s.participant.background();
  t.same(inquiries.sort(), [`${id}:commit`, `${open.body.id}:pending`, `${unknown}:abort`].sort());
  t.match(s.record(id, 'p'), { state: 'committed' });
  t.match(s.record(unknown, 'p'), { state: 'aborted' });
  t.match(s.record(open.body.id, 'p'), { state: 'prepared' }, 'pending: the kit waits');
  t.equal(s.available('apple'), 9);
  t.equal(s.reserved('apple'), 3);
  await s.participant.background();
  t.equal(inquiries.length, 3, 'backoff: not asked again at once');
  await call(commitd.url, 'POST', `/v1/transactions/${open.body.id}/abort`);
});

t.test('the outcome inquiry: forgotten is rolled back, as presumed abort (issue 24, item 6)', async (t) => {
  // A commitd that no longer keeps the outcome answers forgotten (test/cluster/outcomes.test.ts
  // shows when); this one answers it for every id.
  const forgetful = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(req.url?.endsWith('/outcome') ? { outcome: 'forgotten' } : {}));
  });
  await new Promise<void>((resolve) => forgetful.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => forgetful.close(() => resolve())));
  const inquiries: string[] = [];
  const s = await startStockService(tempDir(), {
    coordinatorUrl: `http://127.0.0.1:${(forgetful.address() as { port: number }).port}`,
    inquireAfterMs: 0,
    hooks: { onInquiry: (e) => inquiries.push(e.outcome) },
  });
  t.teardown(() => s.close());
  const id = `tx_${'1'.repeat(26)}`;
  await send(s.url, 'prepare', { transactionId: id, participant: 'p', payload: { sku: 'apple', qty: 2 } });
  t.equal(s.reserved('apple'), 2);
  await s.participant.background();
  t.same(inquiries, ['forgotten']);
  t.match(s.record(id, 'p'), { state: 'aborted' }, 'rolled back');
  t.equal(s.reserved('apple'), 0);
});

t.test('finished records and tombstones go after the retention; prepared ones stay and are reported', async (t) => {
  let nowMs = Date.now();
  const stale: string[][] = [];
  const s = await startStockService(tempDir(), {
    nowMs: () => nowMs,
    retentionMs: 60_000,
    stalePreparedAfterMs: 30_000,
    hooks: { onStalePrepared: (records) => stale.push(records.map((r) => r.transactionId)) },
  });
  t.teardown(() => s.close());
  await send(s.url, 'prepare', { transactionId: 'tx_held', participant: 'p', payload: { sku: 'apple', qty: 1 } });
  await send(s.url, 'prepare', { transactionId: 'tx_done', participant: 'p', payload: { sku: 'apple', qty: 1 } });
  await send(s.url, 'commit', { transactionId: 'tx_done', participant: 'p' });
  await send(s.url, 'abort', { transactionId: 'tx_tomb', participant: 'p' });
  nowMs += 31_000;
  await s.participant.background();
  t.same(stale, [['tx_held']]);
  t.ok(s.record('tx_done', 'p') && s.record('tx_tomb', 'p'), 'kept within the retention');
  nowMs += 30_000;
  await s.participant.background();
  t.equal(s.record('tx_done', 'p'), undefined);
  t.equal(s.record('tx_tomb', 'p'), undefined);
  t.match(s.record('tx_held', 'p'), { state: 'prepared' }, 'a prepared record is never purged');
});
