// Problem details name no peer address and no raw network error to a caller
// that is not admin (issue 23): a forwarded call whose owner cannot be
// reached, and a store that cannot be read, say what kind of failure it was;
// the detail is for the log and for admin tokens (and for every caller of a
// commitd without tokens, where every caller is the operator).

import net from 'node:net';
import Fastify, { type FastifyError } from 'fastify';
import t, { type Test } from 'tap';
import { Forwarding } from '../../src/api/forwarding.js';
import { errorHandler } from '../../src/api/problems.js';
import { ElsewhereError, logUnreadable } from '../../src/coordinator/errors.js';
import { Metrics } from '../../src/metrics.js';
import type { Role } from '../../src/security/tokens.js';

/** A port nothing listens on (one just closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function app(t: Test, ownerUrl: string) {
  const forwarding = new Forwarding({
    instanceId: 'test',
    answerTimeoutMs: 2_000,
    connectionsPerPeer: 1,
    answerBytesMax: 65_536,
    metrics: new Metrics({ processMetrics: false }),
  });
  const a = Fastify();
  // The identity access control would have set, from a test header.
  a.decorateRequest('identity', null);
  a.addHook('onRequest', async (request) => {
    const role = request.headers['x-test-role'];
    if (typeof role === 'string') request.identity = { role: role as Role, tokenId: 'abc', names: null };
  });
  a.setErrorHandler((error: FastifyError, request, reply) =>
    error instanceof ElsewhereError ? forwarding.forward(error, request, reply) : errorHandler(error, request, reply),
  );
  a.get('/v1/transactions/:id', async (request) => {
    throw new ElsewhereError((request.params as { id: string }).id, ownerUrl);
  });
  a.get('/v1/stats', async () => {
    throw logUnreadable(new Error('connect ECONNREFUSED 10.9.8.7:5432'));
  });
  t.teardown(async () => {
    await a.close();
    await forwarding.close();
  });
  return a;
}

t.test('the owner cannot be reached: its address and the error only for admin', async (t) => {
  const port = await closedPort();
  const a = await app(t, `http://127.0.0.1:${port}`);
  for (const role of ['client', 'participant'] as const) {
    const res = await a.inject({ method: 'GET', url: '/v1/transactions/tx_1', headers: { 'x-test-role': role } });
    t.equal(res.statusCode, 503);
    t.equal(res.headers['retry-after'], '1');
    t.notMatch(res.body, String(port), `${role}: no peer port`);
    t.notMatch(res.body, /127\.0\.0\.1|ECONNREFUSED|refused/i, `${role}: no address, no network error`);
    t.match(res.json().detail, /tx_1 is driven by another instance of commitd.*cannot be reached/);
  }
  const admin = await a.inject({ method: 'GET', url: '/v1/transactions/tx_1', headers: { 'x-test-role': 'admin' } });
  t.match(admin.json().detail, `127.0.0.1:${port}`, 'admin reads where');
  const tokenless = await a.inject({ method: 'GET', url: '/v1/transactions/tx_1' });
  t.match(tokenless.json().detail, `127.0.0.1:${port}`, 'without tokens, as before');
});

t.test("a store's network error only for admin", async (t) => {
  const a = await app(t, 'http://127.0.0.1:9');
  const client = await a.inject({ method: 'GET', url: '/v1/stats', headers: { 'x-test-role': 'client' } });
  t.equal(client.statusCode, 503);
  t.equal(client.json().detail, 'the decision log cannot be read');
  const admin = await a.inject({ method: 'GET', url: '/v1/stats', headers: { 'x-test-role': 'admin' } });
  t.equal(admin.json().detail, 'the decision log cannot be read: connect ECONNREFUSED 10.9.8.7:5432');
});
