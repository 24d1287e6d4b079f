// Idempotency keys squatted (issue 9): any caller could take the key
// `order-42` first and the real client then got 409 forever. Keys are now
// scoped to the token that used them: another caller's key is never found.

import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { LOG_FILE } from '../../src/log/sqlite-log.js';
import { startHarness } from '../support/harness.js';

const ALICE = 'alice-client-token-0123456789';
const MALLORY = 'mallory-client-token-0123456789';

t.test("another token's idempotency key is never found", async (t) => {
  // Closed below, for the restart; the restarted one removes the data.
  const h = await startHarness({ server: { tokens: [`client:${ALICE}`, `client:${MALLORY}`] } });
  const begin = (token: string, payload: object) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload,
      headers: { authorization: `Bearer ${token}` },
    });
  // Mallory squats the key with a different request first.
  const squat = await begin(MALLORY, { idempotencyKey: 'order-42', metadata: { squatted: true } });
  t.equal(squat.statusCode, 201);
  const real = await begin(ALICE, { idempotencyKey: 'order-42', metadata: { order: 42 } });
  t.equal(real.statusCode, 201, 'the real client gets its own transaction, not 409');
  t.not(real.json().id, squat.json().id);
  t.equal(real.json().idempotencyKey, 'order-42', 'the view shows the key as the client gave it');
  t.same(real.json().metadata, { order: 42 });
  const retry = await begin(ALICE, { idempotencyKey: 'order-42', metadata: { order: 42 } });
  t.equal(retry.statusCode, 200, "the client's retry finds its own transaction");
  t.equal(retry.json().id, real.json().id);
  const mallorySame = await begin(MALLORY, { idempotencyKey: 'order-42', metadata: { order: 42 } });
  t.equal(mallorySame.statusCode, 409, "Mallory's key is still Mallory's: a different request is a conflict");
  t.notMatch(mallorySame.body, /"order":42/, "and Mallory never sees Alice's transaction");
  // The scope survives a restart (it is part of the key as stored).
  const dataDir = h.dataDir;
  await h.close();
  const again = await startHarness({ server: { tokens: [`client:${ALICE}`, `client:${MALLORY}`] } }, dataDir);
  t.teardown(() => again.close(true));
  const afterRestart = await again.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { idempotencyKey: 'order-42', metadata: { order: 42 } },
    headers: { authorization: `Bearer ${ALICE}` },
  });
  t.equal(afterRestart.statusCode, 200);
  t.equal(afterRestart.json().id, real.json().id, 'found again after a restart');
  t.equal(afterRestart.json().idempotencyKey, 'order-42');
});

t.test('a key stored by an older build (scope and key joined by NUL) is still found, and shown as sent', async (t) => {
  const tokens = [`client:${ALICE}`];
  const h = await startHarness({ server: { tokens } });
  const payload = { idempotencyKey: 'order-7', metadata: { order: 7 } };
  const headers = { authorization: `Bearer ${ALICE}` };
  const first = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload, headers });
  t.equal(first.statusCode, 201);
  const id = first.json().id as string;
  const dataDir = h.dataDir;
  await h.close();
  // What an older build wrote: tokenId NUL key.
  const db = new Database(path.join(dataDir, LOG_FILE));
  const row = db.prepare('SELECT idempotency_key AS k FROM transactions WHERE id = ?').get(id) as { k: string };
  t.equal(row.k.endsWith('order-7'), true);
  t.equal(row.k.includes('\u0000'), false, 'this build does not store NUL');
  // The scope (the token's id), then NUL, then the key.
  const legacy = `${row.k.slice(0, -'order-7'.length - 1)}\u0000order-7`;
  t.not(legacy, row.k);
  db.prepare('UPDATE transactions SET idempotency_key = ? WHERE id = ?').run(legacy, id);
  db.close();
  const again = await startHarness({ server: { tokens } }, dataDir);
  t.teardown(() => again.close(true));
  const retry = await again.app.inject({ method: 'POST', url: '/v1/transactions', payload, headers });
  t.equal(retry.statusCode, 200, 'the retry finds the old one');
  t.equal(retry.json().id, id);
  t.equal(retry.json().idempotencyKey, 'order-7', 'shown as the client sent it');
});

t.test('a key with NUL in it is refused (it separates the scope where keys are stored)', async (t) => {
  const h = await startHarness({});
  t.teardown(() => h.close(true));
  const res = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: { idempotencyKey: 'a\u0000b' } });
  t.equal(res.statusCode, 400);
  t.equal(h.coordinator.inFlight, 0);
});

t.test('with tokens, the in-flight limit per caller counts per token, not per address', async (t) => {
  const h = await startHarness({
    server: { tokens: [`client:${ALICE}`, `client:${MALLORY}`] },
    transactions: { maxInFlightPerCaller: 1 },
  });
  t.teardown(() => h.close(true));
  const begin = (token: string) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: {},
      headers: { authorization: `Bearer ${token}` },
    });
  t.equal((await begin(MALLORY)).statusCode, 201);
  const refused = await begin(MALLORY);
  t.equal(refused.statusCode, 503, 'the second from the same token waits');
  t.ok(refused.headers['retry-after'], 'with Retry-After');
  t.equal((await begin(ALICE)).statusCode, 201, 'another token from the same address goes on');
});

t.test('a key that is not well-formed Unicode is refused: stored, it would be another key', async (t) => {
  // A lone surrogate is valid in a JSON string, but UTF-8 cannot hold it:
  // PostgreSQL stores 'order-\ud800' as 'order-\ufffd', which then finds it
  // (one transaction for two different keys: test/cluster/probe-trust.test.ts);
  // SQLite reads it back as three U+FFFD (the view shows another key).
  const h = await startHarness({ server: { tokens: [`client:${ALICE}`] } });
  t.teardown(() => h.close(true));
  const begin = (key: string) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      // JSON.stringify escapes a lone surrogate as \ud800: what a client sends.
      payload: JSON.stringify({ idempotencyKey: key, metadata: { order: 1 } }),
      headers: { authorization: `Bearer ${ALICE}`, 'content-type': 'application/json' },
    });
  for (const key of ['order-\ud800', 'order-\udfff', '\udc00x']) {
    const res = await begin(key);
    t.equal(res.statusCode, 400, `refused: ${JSON.stringify(key)} (${res.body})`);
  }
  t.equal(h.coordinator.inFlight, 0, 'nothing begun');
  const replacement = await begin('order-\ufffd');
  t.equal(replacement.statusCode, 201, 'the key spelled with U+FFFD is a key of its own');
  t.equal(replacement.json().idempotencyKey, 'order-\ufffd');
  const pair = await begin('order-\ud83d\ude00');
  t.equal(pair.statusCode, 201, 'a well-formed pair (an emoji) is a key like any other');
  t.equal(pair.json().idempotencyKey, 'order-\ud83d\ude00', 'shown as sent');
});
