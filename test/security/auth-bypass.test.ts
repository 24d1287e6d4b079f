// The authentication bypass of issue 9, over a real socket with raw request
// lines (an HTTP client would normalise them): the router decodes
// percent-encodings, accepts absolute-form request lines and collapses
// nothing else, so the check must be made on the route it chose. Every trick
// is sent without a token and must be refused before it changes or reveals
// anything; the same request with the token proves the trick does reach the
// route (so the refusal is the check's, not a 404).

import type { AddressInfo } from 'node:net';
import net from 'node:net';
import t, { type Test } from 'tap';
import { type Harness, startHarness } from '../support/harness.js';

const ADMIN = 'admin-token-0123456789abcdef';

interface RawAnswer {
  status: number;
  body: string;
}

/** Sends one raw HTTP/1.1 request and reads the answer (Connection: close). */
function raw(port: number, requestLine: string, headers: Record<string, string>, body = ''): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('utf8');
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (c: string) => {
      data += c;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      resolve({ status, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    const all: Record<string, string> = {
      host: '127.0.0.1',
      connection: 'close',
      'content-length': String(Buffer.byteLength(body)),
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...headers,
    };
    const head = Object.entries(all)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.end(`${requestLine}\r\n${head}\r\n${body}`);
  });
}

async function serve(t: Test): Promise<{ h: Harness; port: number }> {
  const h = await startHarness({ server: { authToken: ADMIN } });
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => h.close(true));
  return { h, port: (h.app.server.address() as AddressInfo).port };
}

t.test('no encoding or request-line form of a /v1 path gets past the token check', async (t) => {
  const { h, port } = await serve(t);
  const auth = { authorization: `Bearer ${ADMIN}` };
  const begin = async () => {
    const begun = await raw(port, 'POST /v1/transactions HTTP/1.1', auth, '{"participants":[]}');
    return JSON.parse(begun.body).id as string;
  };
  const tricks: Array<[string, string, (id: string) => string]> = [
    ['list, /%76 for /v', 'GET', () => '/%761/transactions'],
    ['list, /v%31 for /v1', 'GET', () => '/v%31/transactions'],
    ['list, every letter encoded', 'GET', () => '/%76%31/%74%72%61%6e%73%61%63%74%69%6f%6e%73'],
    ['list, absolute form', 'GET', () => 'http://x/v1/transactions'],
    ['list, absolute form with an encoded path', 'GET', () => 'http://127.0.0.1/%761/transactions'],
    ['list, double slash', 'GET', () => '//v1/transactions'],
    ['list, upper case', 'GET', () => '/V1/transactions'],
    ['list, trailing slash', 'GET', () => '/v1/transactions/'],
    ['begin, /v%31', 'POST', () => '/v%31/transactions'],
    ['begin, absolute form', 'POST', () => 'http://x/v1/transactions'],
    ['begin, double slash', 'POST', () => '//v1//transactions'],
    ['abort, /%76', 'POST', (id) => `/%761/transactions/${id}/abort`],
    ['abort, encoded id', 'POST', (id) => `/v1/transactions/${id.replace('t', '%74')}/abort`],
    ['abort, absolute form', 'POST', (id) => `http://x/v1/transactions/${id}/abort`],
    ['abort, upper case', 'POST', (id) => `/V1/TRANSACTIONS/${id}/ABORT`],
    ['read, /%76', 'GET', (id) => `/%761/transactions/${id}`],
  ];
  let reached = 0;
  for (const [what, method, targetOf] of tricks) {
    const id = await begin();
    const target = targetOf(id);
    const body = method === 'POST' && !target.toLowerCase().endsWith('/abort') ? '{"participants":[]}' : '';
    const inFlightBefore = h.coordinator.inFlight;
    const without = await raw(port, `${method} ${target} HTTP/1.1`, {}, body);
    t.ok([400, 401, 404].includes(without.status), `${what}: refused without a token (${without.status})`);
    t.equal((await h.coordinator.reads.get(id)).state, 'active', `${what}: the transaction was not aborted`);
    t.equal(h.coordinator.inFlight, inFlightBefore, `${what}: nothing was begun`);
    // With the token, the same request does reach a route: the refusal
    // above was the check's, not the router's.
    if (without.status === 401) {
      const withToken = await raw(port, `${method} ${target} HTTP/1.1`, auth, body);
      t.notOk([401, 403, 404].includes(withToken.status), `${what}: with the token a route runs (${withToken.status})`);
      reached++;
    }
  }
  t.ok(reached >= 8, `most tricks map to real routes (${reached}), so the refusals above are the check's`);
});

t.test('the routes that really run behind the tricks are guarded (not only 404s)', async (t) => {
  const { port } = await serve(t);
  // These are the ones the probe found passing: the router maps them
  // to real routes, so a 404 would mean the test no longer tests the bypass.
  // The absolute form names this host (the Host the request carries): one
  // naming another host is refused outright (issue 23, forwarding), below.
  for (const target of ['/%761/transactions', '/v%31/transactions', 'http://127.0.0.1/v1/transactions']) {
    const withToken = await raw(port, `GET ${target} HTTP/1.1`, { authorization: `Bearer ${ADMIN}` });
    t.equal(withToken.status, 200, `${target} reaches the list route`);
    const without = await raw(port, `GET ${target} HTTP/1.1`, {});
    t.equal(without.status, 401, `${target} is refused without a token`);
  }
  for (const target of ['http://x/v1/transactions', 'http://127.0.0.1:1/v1/transactions']) {
    const withToken = await raw(port, `GET ${target} HTTP/1.1`, { authorization: `Bearer ${ADMIN}` });
    t.equal(withToken.status, 400, `${target}, another host: refused even with a token`);
  }
});
