// Tokens with roles (issue 9, "Who may call"): the role table route by route,
// 401 with WWW-Authenticate for a missing or unknown token, 403 for a known
// token without the right, digests in the config file, the open operations
// endpoints and the option that protects /metrics and /docs, the browser
// Origin check, the loopback Host check of a token-less commitd, and the log
// of refusals and actions (never a secret).

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { type Harness, type Overrides, startHarness, tempDir } from '../support/harness.js';

const CLIENT = 'client-secret-0123456789';
const PARTICIPANT = 'participant-secret-0123456789';
const ADMIN = 'admin-secret-0123456789abc';
const TOKENS = [`client:${CLIENT}`, `participant:${PARTICIPANT}`, `admin:${ADMIN}`];

async function harness(t: Test, overrides: Overrides = {}, lines?: string[]): Promise<Harness> {
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines?.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const h = await startHarness(
    { ...overrides, server: { tokens: TOKENS, ...overrides.server } },
    undefined,
    lines ? { level: 'info', stream } : false,
  );
  t.teardown(() => h.close(true));
  return h;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function problem(t: Test, res: LightMyRequestResponse, status: number, what: string): void {
  t.equal(res.statusCode, status, `${what}: ${res.body}`);
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: a problem document`);
}

t.test('the role table, route by route', async (t) => {
  const h = await harness(t);
  const begin = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { participants: [] },
    headers: bearer(CLIENT),
  });
  t.equal(begin.statusCode, 201);
  const id = begin.json().id;
  const enlist = { name: 'p', url: 'http://127.0.0.1:9/tx' };
  // [method, url, body, roles allowed]
  const routes: Array<[string, string, object | undefined, string[]]> = [
    ['GET', `/v1/transactions/${id}`, undefined, ['client', 'participant', 'admin']],
    ['GET', `/v1/transactions/${id}/outcome`, undefined, ['participant', 'admin']],
    ['GET', '/v1/transactions', undefined, ['admin']],
    ['POST', `/v1/transactions/${id}/participants`, enlist, ['client', 'participant', 'admin']],
    ['POST', '/v1/transactions', { participants: [] }, ['client', 'admin']],
    ['POST', `/v1/transactions/${id}/prepare`, undefined, ['client', 'admin']],
  ];
  const tokens: Record<string, string> = { client: CLIENT, participant: PARTICIPANT, admin: ADMIN };
  for (const [method, url, payload, allowed] of routes) {
    for (const role of ['client', 'participant', 'admin']) {
      const res = await h.app.inject({
        method: method as 'GET',
        url,
        payload,
        headers: bearer(tokens[role] as string),
      });
      if (allowed.includes(role))
        t.notOk([401, 403].includes(res.statusCode), `${role} may ${method} ${url}: ${res.statusCode}`);
      else problem(t, res, 403, `${role} may not ${method} ${url}`);
    }
  }
  // Abort and commit: a participant may not, a client may.
  const second = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, headers: bearer(CLIENT) });
  const id2 = second.json().id;
  for (const action of ['commit', 'abort']) {
    const res = await h.app.inject({
      method: 'POST',
      url: `/v1/transactions/${id2}/${action}`,
      headers: bearer(PARTICIPANT),
    });
    problem(t, res, 403, `participant may not ${action}`);
  }
  t.equal((await h.coordinator.reads.get(id2)).state, 'active', 'the refused commit and abort changed nothing');
  const aborted = await h.app.inject({ method: 'POST', url: `/v1/transactions/${id2}/abort`, headers: bearer(CLIENT) });
  t.equal(aborted.statusCode, 200, 'a client may abort');
});

t.test('401 with WWW-Authenticate for a missing or unknown token; nothing changes', async (t) => {
  const h = await harness(t);
  const cases: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['empty bearer', { authorization: 'Bearer ' }],
    ['unknown token', bearer('not-a-known-token-at-all')],
    ['a prefix of a real token', bearer(CLIENT.slice(0, -1))],
    ['a real token with a suffix', bearer(`${CLIENT}x`)],
    ['basic scheme', { authorization: `Basic ${Buffer.from(`x:${CLIENT}`).toString('base64')}` }],
    ['the digest of a token, as if it were the token', bearer(createHash('sha256').update(CLIENT).digest('hex'))],
  ];
  for (const [what, headers] of cases) {
    const res = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, headers });
    problem(t, res, 401, what);
    t.match(res.headers['www-authenticate'], /^Bearer realm="commitd"/, `${what}: WWW-Authenticate`);
  }
  t.equal(h.coordinator.inFlight, 0, 'nothing was begun');
});

t.test('/healthz and /readyz are open; /metrics and /docs are open unless protected', async (t) => {
  const open = await harness(t);
  for (const url of ['/healthz', '/readyz', '/metrics', '/docs/json']) {
    t.equal((await open.app.inject({ method: 'GET', url })).statusCode, 200, `${url} open by default`);
  }
  const closed = await harness(t, { server: { protectOperations: true } });
  for (const url of ['/healthz', '/readyz']) {
    t.equal((await closed.app.inject({ method: 'GET', url })).statusCode, 200, `${url} always open`);
  }
  for (const url of ['/metrics', '/docs/json', '/docs', '/docs/static/index.html']) {
    problem(t, await closed.app.inject({ method: 'GET', url }), 401, `${url} protected`);
    problem(
      t,
      await closed.app.inject({ method: 'GET', url, headers: bearer(CLIENT) }),
      403,
      `${url}: not for clients`,
    );
    const admin = await closed.app.inject({ method: 'GET', url, headers: bearer(ADMIN) });
    t.ok(admin.statusCode < 400, `${url}: an admin may (${admin.statusCode})`);
  }
});

t.test('tokens from a config file, by their SHA-256 digest; COMMITD_AUTH_TOKEN is an admin token', async (t) => {
  const dir = tempDir('commitd-tokens-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'commitd.yaml');
  const digest = createHash('sha256').update(CLIENT).digest('hex');
  fs.writeFileSync(file, `server:\n  tokens:\n    - client:sha256:${digest}\n    - participant:${PARTICIPANT}\n`);
  const config = loadConfig({ COMMITD_CONFIG: file, COMMITD_AUTH_TOKEN: ADMIN });
  t.same(config.server.tokens, [`client:sha256:${digest}`, `participant:${PARTICIPANT}`]);
  const h = await harness(t, { server: { tokens: config.server.tokens, authToken: ADMIN } });
  const begin = (token: string) =>
    h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, headers: bearer(token) });
  t.equal((await begin(CLIENT)).statusCode, 201, 'the client token, known by its digest');
  problem(t, await begin(PARTICIPANT), 403, 'a participant may not begin');
  t.equal((await begin(ADMIN)).statusCode, 201, 'COMMITD_AUTH_TOKEN is an admin token');
  const list = await h.app.inject({ method: 'GET', url: '/v1/transactions', headers: bearer(ADMIN) });
  t.equal(list.statusCode, 200, 'and may list');
});

t.test('malformed tokens stop the start without echoing the secret', async (t) => {
  const secret = 'MistypedSecretValue-42';
  const cases: Array<[string, RegExp]> = [
    [`clinet:${secret}`, /unknown role 'clinet'/],
    [secret, /no role given/],
    ['client:short', /at least 16 characters/],
    ['client:sha256:abc', /64 hex digits/],
    [`client:${secret},admin:${secret}`, /listed twice/],
  ];
  for (const [value, message] of cases) {
    let error: unknown;
    try {
      loadConfig({ COMMITD_TOKENS: value });
    } catch (e) {
      error = e;
    }
    t.ok(error instanceof ConfigError, `${value.slice(0, 12)}…: a configuration error`);
    t.match((error as Error).message, message);
    t.match((error as Error).message, /COMMITD_TOKENS/, 'names the setting');
    t.notMatch((error as Error).message, /MistypedSecret|short/, 'never the secret');
  }
  // A secret in a config file that is not valid YAML: the parser quotes the line.
  const dir = tempDir('commitd-tokens-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'broken.yaml');
  fs.writeFileSync(file, `server:\n  authToken: "${secret}\n  port: [\n`);
  t.throws(() => loadConfig({ COMMITD_CONFIG: file }), ConfigError);
  try {
    loadConfig({ COMMITD_CONFIG: file });
  } catch (e) {
    t.match((e as Error).message, /not valid YAML/);
    t.notMatch((e as Error).message, /MistypedSecret/, 'the YAML error does not quote the secret');
  }
  try {
    loadConfig({ COMMITD_AUTH_TOKEN: undefined, COMMITD_CONFIG: undefined, COMMITD_TOKENS: undefined });
    const f2 = path.join(dir, 'wrong-type.yaml');
    fs.writeFileSync(f2, `server:\n  authToken: [${secret}]\n`);
    loadConfig({ COMMITD_CONFIG: f2 });
    t.fail('a list as authToken is refused');
  } catch (e) {
    t.match((e as Error).message, /authToken .* must be a string/);
    t.notMatch((e as Error).message, /MistypedSecret/, 'a wrongly typed secret is not echoed');
  }
});

t.test("a browser Origin other than commitd's own or an allowed one is refused on every mutating route", async (t) => {
  const h = await harness(t, { server: { allowedOrigins: ['https://console.example:8443'] } });
  const begin = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, headers: bearer(CLIENT) });
  const id = begin.json().id;
  const mutating: Array<[string, object | undefined]> = [
    ['/v1/transactions', {}],
    [`/v1/transactions/${id}/participants`, { name: 'p', url: 'http://127.0.0.1:9/tx' }],
    [`/v1/transactions/${id}/prepare`, undefined],
    [`/v1/transactions/${id}/commit`, undefined],
    [`/v1/transactions/${id}/abort`, undefined],
  ];
  for (const origin of ['https://evil.example', 'null', 'http://localhost:81', 'https://console.example']) {
    for (const [url, payload] of mutating) {
      const res = await h.app.inject({ method: 'POST', url, payload, headers: { ...bearer(CLIENT), origin } });
      problem(t, res, 403, `${origin} -> ${url}`);
    }
  }
  t.equal(h.coordinator.inFlight, 1, 'nothing begun');
  t.equal((await h.coordinator.reads.get(id)).state, 'active', 'nothing enlisted, prepared, committed or aborted');
  t.equal((await h.coordinator.reads.get(id)).participants.length, 0);
  const read = await h.app.inject({
    method: 'GET',
    url: `/v1/transactions/${id}`,
    headers: { ...bearer(CLIENT), origin: 'https://evil.example' },
  });
  t.equal(read.statusCode, 200, 'reads are not refused for their Origin');
  for (const origin of ['http://localhost:80', 'https://console.example:8443']) {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: {},
      headers: { ...bearer(CLIENT), origin },
    });
    t.equal(res.statusCode, 201, `${origin} (own or allowed) may`);
  }
  const noOrigin = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: {},
    headers: bearer(CLIENT),
  });
  t.equal(noOrigin.statusCode, 201, 'no Origin (not a browser) may');
});

t.test(
  'without tokens: only a loopback Host is answered (DNS rebinding), and a foreign Origin is refused',
  async (t) => {
    const h = await startHarness({});
    t.teardown(() => h.close(true));
    const begin = (headers: Record<string, string>) =>
      h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {}, headers });
    for (const host of ['localhost:7070', '127.0.0.1:7070', '[::1]:7070', 'localhost']) {
      t.equal((await begin({ host })).statusCode, 201, `Host ${host}`);
    }
    for (const host of ['evil.example:7070', 'rebound.attacker.test', '10.0.0.1:7070']) {
      problem(t, await begin({ host }), 403, `Host ${host}`);
    }
    // The issue's finding: a page in a browser on the same machine posting to a token-less loopback commitd.
    const begun = await begin({ host: 'localhost:7070' });
    const id = begun.json().id;
    const abort = await h.app.inject({
      method: 'POST',
      url: `/v1/transactions/${id}/abort`,
      headers: { host: '127.0.0.1:7070', origin: 'https://evil.example' },
    });
    problem(t, abort, 403, 'a cross-origin abort from a browser page');
    t.equal((await h.coordinator.reads.get(id)).state, 'active', 'and the transaction is untouched');
  },
);

t.test('refused tokens and every action are logged, with the token id and never the secret', async (t) => {
  const lines: string[] = [];
  const h = await harness(t, {}, lines);
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const begin = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: {},
    headers: { ...bearer(CLIENT), traceparent: `00-${trace}-00f067aa0ba902b7-01` },
  });
  const id = begin.json().id;
  await h.app.inject({ method: 'POST', url: `/v1/transactions/${id}/abort`, headers: bearer(ADMIN) });
  await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: {},
    headers: bearer('wrong-secret-value-123'),
  });
  await h.app.inject({ method: 'GET', url: '/v1/transactions', headers: bearer(PARTICIPANT) });
  const records = lines.map((l) => JSON.parse(l));
  const clientId = createHash('sha256').update(CLIENT).digest('hex').slice(0, 12);
  const adminId = createHash('sha256').update(ADMIN).digest('hex').slice(0, 12);
  const participantId = createHash('sha256').update(PARTICIPANT).digest('hex').slice(0, 12);
  t.match(records, [
    {
      msg: 'api action',
      action: 'begin',
      transaction: id,
      traceId: trace,
      who: { role: 'client', token: clientId },
      status: 201,
    },
    { msg: 'api action', action: 'abort', transaction: id, who: { role: 'admin', token: adminId }, status: 200 },
    { msg: 'request refused', refused: 'unknown token', route: '/v1/transactions' },
    { msg: 'request refused', refused: 'role not allowed', role: 'participant', token: participantId },
  ]);
  t.notOk('traceId' in records[1], 'a call without a traceparent names no trace');
  const all = lines.join('\n');
  for (const secret of [CLIENT, ADMIN, PARTICIPANT, 'wrong-secret-value-123']) {
    t.notOk(all.includes(secret), 'no secret in the log');
  }
});
