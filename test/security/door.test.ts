// Limits at the door (issue 9): requests per second per token or address
// (429 problem with Retry-After), slow clients cut off (headers, body), idle
// connections closed, a connection limit, and list pages bounded in bytes.

import type { AddressInfo } from 'node:net';
import net from 'node:net';
import t, { type Test } from 'tap';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';

async function serve(t: Test, overrides: Overrides): Promise<{ h: Harness; port: number }> {
  const h = await startHarness(overrides);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => h.close(true));
  return { h, port: (h.app.server.address() as AddressInfo).port };
}

/** Resolves with what the server sent once it closes the socket, or null if it is still open after `boundMs`. */
function closedWithin(socket: net.Socket, boundMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      data += c;
    });
    const timer = setTimeout(() => resolve(null), boundMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    socket.on('error', () => {});
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

t.test('requests per second per token; 429 problem with Retry-After; per address without a token', async (t) => {
  const tokens = ['client:client-one-0123456789', 'client:client-two-0123456789'];
  const h = await startHarness({ server: { tokens, rateLimitPerS: 5 } });
  t.teardown(() => h.close(true));
  const get = (token: string | null, remoteAddress = '127.0.0.1') =>
    h.app.inject({
      method: 'GET',
      url: '/v1/transactions/tx_00000000000000000000000000',
      remoteAddress,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) statuses.push((await get('client-one-0123456789')).statusCode);
  const limited = statuses.filter((s) => s === 429).length;
  // Within one second window at most 5 pass; the loop may straddle two windows.
  t.ok(limited >= 2, `the first token is limited (${statuses.join(',')})`);
  const refused = await get('client-one-0123456789');
  if (refused.statusCode === 429) {
    t.match(refused.headers['content-type'], /problem\+json/);
    t.match(refused.json(), { type: 'urn:commitd:problem:rate-limited', status: 429 });
    t.match(String(refused.headers['retry-after']), /^\d+$/, 'Retry-After in seconds');
  }
  // From another address: the 404s above count against 127.0.0.1 too (refusals are limited by address).
  t.equal((await get('client-two-0123456789', '127.0.0.9')).statusCode, 404, 'another token has its own budget');
  t.equal((await h.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, '/healthz is never limited');
});

t.test('refused calls (401, 403, 404, /docs) count by address, before authentication', async (t) => {
  const tokens = ['client:client-one-0123456789', 'participant:participant-0123456789'];
  const h = await startHarness({ server: { tokens, rateLimitPerS: 5 } });
  t.teardown(() => h.close(true));
  const call = (url: string, token: string | null, remoteAddress: string) =>
    h.app.inject({ method: 'GET', url, remoteAddress, headers: token ? { authorization: `Bearer ${token}` } : {} });
  const guesses: number[] = [];
  for (let i = 0; i < 20; i++) {
    guesses.push(
      (await call('/v1/transactions/tx_00000000000000000000000000', `guess-${i}-0123456789`, '10.1.1.1')).statusCode,
    );
  }
  // Before: twenty 401s, every guess answered. Within one window at most 5 are (the loop may straddle two).
  t.ok(guesses.filter((s) => s === 429).length >= 10, `token guesses are limited (${guesses.join(',')})`);
  const limited = await call('/v1/transactions/tx_00000000000000000000000000', 'guess-x-0123456789', '10.1.1.1');
  if (limited.statusCode === 429) {
    t.match(limited.json(), { type: 'urn:commitd:problem:rate-limited', status: 429 });
    t.equal(limited.headers['retry-after'], '1');
  }
  const forbidden: number[] = [];
  for (let i = 0; i < 20; i++)
    forbidden.push((await call('/v1/transactions', 'client-one-0123456789', '10.1.1.2')).statusCode);
  t.ok(forbidden.filter((s) => s === 429).length >= 10, `403s are limited (${forbidden.join(',')})`);
  const probes: number[] = [];
  for (let i = 0; i < 20; i++) {
    probes.push(
      (await call(`/v1/transactions/tx_0000000000000000000000000${i % 10}`, 'client-one-0123456789', '10.1.1.3'))
        .statusCode,
    );
  }
  t.ok(probes.filter((s) => s === 429).length >= 10, `id probes (404) are limited (${probes.join(',')})`);
  const docs: number[] = [];
  for (let i = 0; i < 20; i++) docs.push((await call('/docs/json', null, '10.1.1.4')).statusCode);
  t.ok(docs.filter((s) => s === 429).length >= 10, `/docs is limited (${docs.join(',')})`);
  t.equal((await call('/healthz', null, '10.1.1.1')).statusCode, 200, '/healthz is never limited');
  // A token not used above (the client's own per-token budget is spent).
  const elsewhere = await call('/v1/transactions/tx_00000000000000000000000000', 'participant-0123456789', '10.1.1.9');
  t.equal(elsewhere.statusCode, 404, 'another address is not limited');
});

t.test('without tokens the limit is per client address', async (t) => {
  const h = await startHarness({ server: { rateLimitPerS: 3 } });
  t.teardown(() => h.close(true));
  const get = (remoteAddress: string) =>
    h.app.inject({ method: 'GET', url: '/v1/transactions/tx_00000000000000000000000000', remoteAddress });
  const a: number[] = [];
  for (let i = 0; i < 10; i++) a.push((await get('127.0.0.2')).statusCode);
  t.ok(a.filter((s) => s === 429).length >= 3, `one address is limited (${a.join(',')})`);
  t.equal((await get('127.0.0.3')).statusCode, 404, 'another address is not');
});

t.test('a client that trickles its headers is cut off', async (t) => {
  const { port } = await serve(t, { server: { headersTimeoutMs: 300, requestTimeoutMs: 2000 } });
  const socket = await connect(port);
  const closed = closedWithin(socket, 15_000);
  socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  // One header byte every 100 ms for up to 10 s: never idle, never finished.
  let sent = 0;
  const header = `x-slow: ${'a'.repeat(100)}`;
  const drip = setInterval(() => {
    if (socket.destroyed || sent >= header.length) return clearInterval(drip);
    socket.write(header[sent++] as string);
  }, 100);
  const answer = await closed;
  clearInterval(drip);
  t.not(answer, null, 'the server closed the connection');
  t.ok(sent < header.length, `before the headers were complete (${sent} of ${header.length} bytes sent)`);
  t.match(answer ?? '', /^(HTTP\/1\.1 408|)/, 'with 408 or nothing');
});

t.test('a client that trickles its body is cut off at the request timeout', async (t) => {
  const { h, port } = await serve(t, { server: { headersTimeoutMs: 300, requestTimeoutMs: 600 } });
  const socket = await connect(port);
  const closed = closedWithin(socket, 15_000);
  const body = JSON.stringify({ participants: [], metadata: { pad: 'x'.repeat(200) } });
  socket.write(
    `POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
  );
  let sent = 0;
  const drip = setInterval(() => {
    if (socket.destroyed || sent >= body.length) return clearInterval(drip);
    socket.write(body[sent++] as string);
  }, 50);
  const answer = await closed;
  clearInterval(drip);
  t.not(answer, null, 'the server closed the connection');
  t.ok(sent < body.length, `before the body was complete (${sent} of ${body.length} bytes)`);
  t.equal(h.coordinator.inFlight, 0, 'nothing was begun');
});

t.test('an idle connection is closed; connections beyond the limit are refused', async (t) => {
  const { port } = await serve(t, {
    server: { idleTimeoutMs: 300, headersTimeoutMs: 200, requestTimeoutMs: 1000, maxConnections: 2 },
  });
  const idle = await connect(port);
  t.not(await closedWithin(idle, 15_000), null, 'a silent connection is closed');
  const a = await connect(port);
  const b = await connect(port);
  a.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  const c = await connect(port);
  t.not(await closedWithin(c, 5_000), null, 'the third connection is closed by the server');
  a.destroy();
  b.destroy();
});

t.test('a list page holds at most listPageMaxBytes of transactions; next continues from there', async (t) => {
  const h = await startHarness({ transactions: { listPageMaxBytes: 4096 } });
  t.teardown(() => h.close(true));
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { metadata: { i, pad: 'x'.repeat(1000) } },
    });
    ids.push(res.json().id);
  }
  const seen: string[] = [];
  let after: string | null = null;
  let pages = 0;
  do {
    const url: string = `/v1/transactions?limit=500${after ? `&after=${after}` : ''}`;
    const res = await h.app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 200);
    t.match(res.headers['content-type'], /^application\/json/);
    const body = res.json();
    const txBytes = body.transactions.reduce((n: number, tx: unknown) => n + Buffer.byteLength(JSON.stringify(tx)), 0);
    t.ok(txBytes <= 4096, `page ${pages}: ${body.transactions.length} transactions, ${txBytes} bytes`);
    t.ok(body.transactions.length >= 1, 'never an empty page while more exist');
    seen.push(...body.transactions.map((x: { id: string }) => x.id));
    after = body.next;
    pages++;
  } while (after !== null && pages < 20);
  t.ok(pages >= 3, `${pages} pages`);
  t.same(seen, [...ids].reverse(), 'every transaction once, newest first');
  // One transaction larger than the budget still comes, alone.
  const small = await startHarness({ transactions: { listPageMaxBytes: 1024 } });
  t.teardown(() => small.close(true));
  for (let i = 0; i < 2; i++) {
    await small.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { metadata: { pad: 'y'.repeat(2000) } },
    });
  }
  const first = (await small.app.inject({ method: 'GET', url: '/v1/transactions' })).json();
  t.equal(first.transactions.length, 1, 'an oversized transaction comes alone');
  t.not(first.next, null);
});
