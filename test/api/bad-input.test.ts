// Bad input of every kind: each answer is a 4xx RFC 9457 problem document,
// nothing changes (no transaction appears or moves, no participant hears a
// thing), and the process keeps serving.

import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';
import { startParticipant, type TestParticipant } from '../support/participant.js';

/** Small limits, set here so the tests do not depend on config/default.yaml. */
const LIMITS: Overrides = {
  server: { bodyLimitBytes: 4096 },
  transactions: {
    maxParticipants: 3,
    maxPayloadBytes: 256,
    maxMetadataBytes: 128,
    timeoutMsMin: 100,
    timeoutMsMax: 60_000,
    defaultTimeoutMs: 30_000,
    listLimitDefault: 10,
    listLimitMax: 20,
  },
};

/** Well-formed (ULID alphabet, right length) but never issued. */
const UNKNOWN_ID = 'tx_00000000000000000000000000';
const MALFORMED_IDS = [
  'nope',
  'tx_123',
  'tx_01jd0000000000000000000000',
  'tx_0000000000000000000000000U',
  `${UNKNOWN_ID}0`,
];

async function setup(t: Test, overrides: Overrides = LIMITS): Promise<{ h: Harness; p: TestParticipant }> {
  const h = await startHarness(overrides);
  const p = await startParticipant();
  t.teardown(async () => {
    await h.close(true);
    await p.close();
  });
  return { h, p };
}

function assertProblem(t: Test, res: LightMyRequestResponse, status: number, what: string): any {
  t.equal(res.statusCode, status, `${what}: status (${res.body})`);
  t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: content-type`);
  let body: any;
  try {
    body = JSON.parse(res.body);
  } catch {
    t.fail(`${what}: the body is JSON`, { body: res.body });
    return undefined;
  }
  t.type(body.type, 'string', `${what}: type`);
  t.not(body.type, '', `${what}: type is not empty`);
  t.type(body.title, 'string', `${what}: title`);
  t.not(body.title, '', `${what}: title is not empty`);
  t.type(body.detail, 'string', `${what}: detail`);
  t.not(body.detail, '', `${what}: detail is not empty`);
  t.equal(body.status, status, `${what}: status member equals the HTTP status`);
  return body;
}

/** Everything the coordinator shows: every transaction, as the list API returns them. */
async function everything(h: Harness): Promise<unknown[]> {
  const res = await h.app.inject({
    method: 'GET',
    url: `/v1/transactions?limit=${h.config.transactions.listLimitMax}`,
  });
  if (res.statusCode !== 200) throw new Error(`list failed: ${res.statusCode} ${res.body}`);
  const body = res.json();
  if (body.next !== null) throw new Error('more transactions than one page; the test expects few');
  return body.transactions;
}

interface BadRequest {
  readonly what: string;
  readonly method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  readonly url: string;
  /** An object is sent as JSON; a string is sent as is. */
  readonly payload?: unknown;
  readonly headers?: Record<string, string>;
  readonly status: number;
}

/**
 * Sends each bad request and checks that it is refused with a problem, that
 * nothing changed, and that the coordinator still answers a read.
 */
async function refuseAll(t: Test, h: Harness, cases: readonly BadRequest[]): Promise<void> {
  for (const c of cases) {
    const before = await everything(h);
    const res = await h.app.inject({
      method: c.method,
      url: c.url,
      headers: c.headers,
      payload: c.payload as string | object | undefined,
    });
    assertProblem(t, res, c.status, c.what);
    t.same(await everything(h), before, `${c.what}: no state changed`);
  }
}

/** A good request after the bad ones: the process is still serving and works. */
async function stillServes(t: Test, h: Harness, p: TestParticipant): Promise<void> {
  const before = (await everything(h)).length;
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { participants: [{ name: 'good', url: p.url }], commit: true },
  });
  t.equal(res.statusCode, 200, `a good request afterwards commits (${res.body})`);
  t.equal(res.json().state, 'committed');
  t.equal((await everything(h)).length, before + 1, 'exactly one transaction more');
  t.equal(p.count('prepare'), 1, 'the participant hears only the good transaction');
  t.same(h.errors, [], 'no internal errors');
}

const begin = (what: string, payload: unknown, status = 400): BadRequest => ({
  what,
  method: 'POST',
  url: '/v1/transactions',
  payload,
  status,
});

t.test('malformed JSON is a 400 problem', async (t) => {
  const { h, p } = await setup(t);
  const json = { 'content-type': 'application/json' };
  await refuseAll(t, h, [
    {
      what: 'truncated JSON',
      method: 'POST',
      url: '/v1/transactions',
      payload: '{"participants": [',
      headers: json,
      status: 400,
    },
    {
      what: 'not JSON at all',
      method: 'POST',
      url: '/v1/transactions',
      payload: 'participants=1',
      headers: json,
      status: 400,
    },
    {
      what: 'trailing comma',
      method: 'POST',
      url: '/v1/transactions',
      payload: '{"commit": true,}',
      headers: json,
      status: 400,
    },
    {
      what: 'prototype poisoning',
      method: 'POST',
      url: '/v1/transactions',
      payload: '{"__proto__": {"commit": true}}',
      headers: json,
      status: 400,
    },
    {
      what: 'a JSON array, not an object',
      method: 'POST',
      url: '/v1/transactions',
      payload: '[]',
      headers: json,
      status: 400,
    },
    { what: 'a JSON string', method: 'POST', url: '/v1/transactions', payload: '"begin"', headers: json, status: 400 },
    { what: 'JSON null', method: 'POST', url: '/v1/transactions', payload: 'null', headers: json, status: 400 },
  ]);
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('wrong types are 400 problems: no coercion', async (t) => {
  const { h, p } = await setup(t);
  const one = [{ name: 'orders', url: p.url }];
  await refuseAll(t, h, [
    begin('participants is an object', { participants: { name: 'orders', url: p.url } }),
    begin('participants is a string', { participants: 'orders' }),
    begin('timeoutMs is a string', { participants: one, timeoutMs: '5000' }),
    begin('timeoutMs is not an integer', { participants: one, timeoutMs: 5000.5 }),
    begin('commit is "yes"', { participants: one, commit: 'yes' }),
    begin('commit is 1', { participants: one, commit: 1 }),
    begin('a name is a number', { participants: [{ name: 42, url: p.url }] }),
    begin('a url is a number', { participants: [{ name: 'orders', url: 8080 }] }),
    begin('a participant is a string', { participants: [p.url] }),
    begin('a participant lacks its url', { participants: [{ name: 'orders' }] }),
    begin('a participant lacks its name', { participants: [{ url: p.url }] }),
    begin('metadata is an array', { participants: one, metadata: ['a'] }),
    begin('metadata is a string', { participants: one, metadata: 'a' }),
    begin('idempotencyKey is a number', { participants: one, idempotencyKey: 7 }),
    begin('idempotencyKey is empty', { participants: one, idempotencyKey: '' }),
  ]);
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('unknown fields are refused, at the top level and inside a participant', async (t) => {
  const { h, p } = await setup(t);
  await refuseAll(t, h, [
    begin('unknown top-level field', { participants: [{ name: 'orders', url: p.url }], commitNow: true }),
    begin('unknown top-level field with commit', {
      participants: [{ name: 'orders', url: p.url }],
      commit: true,
      timeout: 5000,
    }),
    begin('unknown participant field', { participants: [{ name: 'orders', url: p.url, vote: 'yes' }], commit: true }),
  ]);
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test(
  'too large: body beyond bodyLimitBytes, payload beyond maxPayloadBytes, metadata beyond maxMetadataBytes',
  async (t) => {
    const { h, p } = await setup(t);
    const limits = h.config.transactions;
    t.equal(h.config.server.bodyLimitBytes, 4096, 'the small body limit is in force');
    const bigBody = JSON.stringify({
      participants: [{ name: 'orders', url: p.url }],
      metadata: { filler: 'x'.repeat(5000) },
      commit: true,
    });
    t.ok(Buffer.byteLength(bigBody) > h.config.server.bodyLimitBytes);
    await refuseAll(t, h, [
      {
        what: 'body beyond bodyLimitBytes',
        method: 'POST',
        url: '/v1/transactions',
        payload: bigBody,
        headers: { 'content-type': 'application/json' },
        status: 413,
      },
      begin(
        'payload beyond maxPayloadBytes',
        {
          participants: [{ name: 'orders', url: p.url, payload: { blob: 'x'.repeat(limits.maxPayloadBytes) } }],
          commit: true,
        },
        413,
      ),
      begin(
        'payload beyond maxPayloadBytes on the second participant',
        {
          participants: [
            { name: 'orders', url: p.url, payload: { small: 1 } },
            { name: 'payments', url: p.url, payload: 'x'.repeat(limits.maxPayloadBytes) },
          ],
        },
        413,
      ),
      begin(
        'metadata beyond maxMetadataBytes',
        {
          participants: [{ name: 'orders', url: p.url }],
          metadata: { note: 'x'.repeat(limits.maxMetadataBytes) },
          commit: true,
        },
        413,
      ),
    ]);
    t.equal(p.received.length, 0);

    // At the limits exactly, the same fields are accepted.
    const payload = 'x'.repeat(limits.maxPayloadBytes - 2); // JSON string: two quotes
    const metadata = { n: 'x'.repeat(limits.maxMetadataBytes - '{"n":""}'.length) };
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { participants: [{ name: 'orders', url: p.url, payload }], metadata },
    });
    t.equal(res.statusCode, 201, `payload and metadata of exactly the limit are accepted (${res.body})`);
    t.same(res.json().metadata, metadata);
  },
);

t.test('a refused begin does not use up its idempotency key', async (t) => {
  const { h, p } = await setup(t);
  const good = { participants: [{ name: 'orders', url: p.url }], idempotencyKey: 'order-9' };
  await refuseAll(t, h, [
    begin(
      'payload too large',
      { ...good, participants: [{ name: 'orders', url: p.url, payload: 'x'.repeat(300) }] },
      413,
    ),
    begin('duplicate names', {
      ...good,
      participants: [
        { name: 'orders', url: p.url },
        { name: 'orders', url: p.url },
      ],
    }),
    begin('credentials in a url', { ...good, participants: [{ name: 'orders', url: 'http://u:p@127.0.0.1:1/tx' }] }),
  ]);
  const res = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: good });
  t.equal(res.statusCode, 201, `the key is still free (${res.body})`);
  t.equal(res.json().idempotencyKey, 'order-9');
});

t.test('an enlistment with bad input changes nothing', async (t) => {
  const { h, p } = await setup(t);
  const begun = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { participants: [{ name: 'orders', url: p.url }] },
  });
  t.equal(begun.statusCode, 201);
  const id = begun.json().id;
  const enlist = (what: string, payload: unknown, status = 400): BadRequest => ({
    what,
    method: 'POST',
    url: `/v1/transactions/${id}/participants`,
    payload,
    status,
  });
  await refuseAll(t, h, [
    enlist('unknown field', { name: 'payments', url: p.url, weight: 1 }),
    enlist('name is a number', { name: 1, url: p.url }),
    enlist('empty name', { name: '', url: p.url }),
    enlist('ftp url', { name: 'payments', url: 'ftp://127.0.0.1/tx' }),
    enlist('url with credentials', { name: 'payments', url: 'http://user:pw@127.0.0.1:1/tx' }),
    enlist('no url', { name: 'payments' }),
    enlist('payload beyond maxPayloadBytes', { name: 'payments', url: p.url, payload: 'x'.repeat(300) }, 413),
    {
      what: 'malformed JSON',
      method: 'POST',
      url: `/v1/transactions/${id}/participants`,
      payload: '{"name":',
      headers: { 'content-type': 'application/json' },
      status: 400,
    },
  ]);
  const tx = (await h.app.inject({ method: 'GET', url: `/v1/transactions/${id}` })).json();
  t.equal(tx.state, 'active');
  t.same(
    tx.participants.map((q: any) => q.name),
    ['orders'],
  );
  t.equal(p.received.length, 0);
});

t.test('more participants than maxParticipants is a 400, at begin and through enlistment', async (t) => {
  const { h, p } = await setup(t);
  const max = h.config.transactions.maxParticipants;
  const many = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `p${i}`, url: p.url }));
  await refuseAll(t, h, [begin('one participant too many', { participants: many(max + 1), commit: true })]);

  const begun = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: { participants: many(max) } });
  t.equal(begun.statusCode, 201, 'exactly maxParticipants is accepted');
  const id = begun.json().id;
  await refuseAll(t, h, [
    {
      what: 'enlisting beyond maxParticipants',
      method: 'POST',
      url: `/v1/transactions/${id}/participants`,
      payload: { name: 'extra', url: p.url },
      status: 400,
    },
  ]);
  const again = await h.app.inject({
    method: 'POST',
    url: `/v1/transactions/${id}/participants`,
    payload: { name: 'p0', url: p.url },
  });
  t.equal(again.statusCode, 200, 'repeating an enlistment at the limit is still fine');
  t.equal(again.json().participants.length, max);
  t.equal(p.received.length, 0);
});

t.test('participant urls must be http(s) without credentials', async (t) => {
  const { h, p } = await setup(t);
  const urls = [
    'ftp://127.0.0.1/tx',
    'javascript:alert(1)',
    'orders',
    '',
    'file:///etc/passwd',
    '//127.0.0.1:8080/tx',
    'http://',
    'http://user:secret@127.0.0.1:8080/tx',
    'http://user@127.0.0.1:8080/tx',
  ];
  await refuseAll(
    t,
    h,
    urls.map((url) => begin(`url ${JSON.stringify(url)}`, { participants: [{ name: 'orders', url }], commit: true })),
  );
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('duplicate participant names are a 400', async (t) => {
  const { h, p } = await setup(t);
  await refuseAll(t, h, [
    begin('same name, same url', {
      participants: [
        { name: 'orders', url: p.url },
        { name: 'orders', url: p.url },
      ],
      commit: true,
    }),
    begin('same name, other url', {
      participants: [
        { name: 'orders', url: p.url },
        { name: 'payments', url: p.url },
        { name: 'orders', url: 'http://127.0.0.1:1/tx' },
      ],
    }),
  ]);
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('timeoutMs outside [timeoutMsMin, timeoutMsMax] is a 400', async (t) => {
  const { h, p } = await setup(t);
  const { timeoutMsMin, timeoutMsMax } = h.config.transactions;
  const one = [{ name: 'orders', url: p.url }];
  await refuseAll(t, h, [
    begin('below timeoutMsMin', { participants: one, timeoutMs: timeoutMsMin - 1 }),
    begin('zero', { participants: one, timeoutMs: 0 }),
    begin('negative', { participants: one, timeoutMs: -1000 }),
    begin('above timeoutMsMax', { participants: one, timeoutMs: timeoutMsMax + 1 }),
  ]);
  for (const timeoutMs of [timeoutMsMin, timeoutMsMax]) {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { participants: one, timeoutMs },
    });
    t.equal(res.statusCode, 201, `timeoutMs ${timeoutMs} at the bound is accepted`);
    const tx = res.json();
    t.equal(Date.parse(tx.deadline) - Date.parse(tx.createdAt), timeoutMs);
  }
  t.equal(p.received.length, 0);
});

t.test('bad participant names are a 400', async (t) => {
  const { h, p } = await setup(t);
  const names = ['', ' ', 'two words', ' orders', 'orders ', 'or/ders', '-orders', 'x'.repeat(129), 'ordérs'];
  await refuseAll(
    t,
    h,
    names.map((name) => begin(`name ${JSON.stringify(name)}`, { participants: [{ name, url: p.url }], commit: true })),
  );
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('unknown ids are 404 problems, malformed ids 400 problems', async (t) => {
  const { h, p } = await setup(t);
  const routes = (id: string, status: number): BadRequest[] => [
    { what: `GET ${id}`, method: 'GET', url: `/v1/transactions/${id}`, status },
    { what: `commit ${id}`, method: 'POST', url: `/v1/transactions/${id}/commit`, status },
    { what: `abort ${id}`, method: 'POST', url: `/v1/transactions/${id}/abort`, status },
    { what: `prepare ${id}`, method: 'POST', url: `/v1/transactions/${id}/prepare`, status },
    {
      what: `enlist in ${id}`,
      method: 'POST',
      url: `/v1/transactions/${id}/participants`,
      payload: { name: 'orders', url: p.url },
      status,
    },
  ];
  await refuseAll(t, h, routes(UNKNOWN_ID, 404));
  for (const id of MALFORMED_IDS) await refuseAll(t, h, routes(encodeURIComponent(id), 400));
  await refuseAll(
    t,
    h,
    MALFORMED_IDS.map((id) => ({
      what: `outcome of ${id}`,
      method: 'GET',
      url: `/v1/transactions/${encodeURIComponent(id)}/outcome`,
      status: 400,
    })),
  );
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('the outcome of an unknown, well-formed id is presumed abort', async (t) => {
  const { h } = await setup(t);
  const res = await h.app.inject({ method: 'GET', url: `/v1/transactions/${UNKNOWN_ID}/outcome` });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), { outcome: 'abort' });
  t.same(await everything(h), [], 'asking creates no record');
});

t.test('unknown routes are 404 problems', async (t) => {
  const { h, p } = await setup(t);
  await refuseAll(t, h, [
    { what: 'unknown path', method: 'GET', url: '/v1/nothing-here', status: 404 },
    { what: 'unknown version', method: 'POST', url: '/v2/transactions', payload: { participants: [] }, status: 404 },
    { what: 'unknown action', method: 'POST', url: `/v1/transactions/${UNKNOWN_ID}/rollback`, status: 404 },
    { what: 'DELETE a transaction', method: 'DELETE', url: `/v1/transactions/${UNKNOWN_ID}`, status: 404 },
    { what: 'PUT the collection', method: 'PUT', url: '/v1/transactions', payload: {}, status: 404 },
    { what: 'root', method: 'GET', url: '/', status: 404 },
  ]);
  await stillServes(t, h, p);
});

t.test('bad list queries are 400 problems', async (t) => {
  const { h, p } = await setup(t);
  const max = h.config.transactions.listLimitMax;
  const list = (what: string, query: string): BadRequest => ({
    what,
    method: 'GET',
    url: `/v1/transactions?${query}`,
    status: 400,
  });
  await refuseAll(t, h, [
    list('limit=0', 'limit=0'),
    list('limit=abc', 'limit=abc'),
    list('limit=-1', 'limit=-1'),
    list('limit=1.5', 'limit=1.5'),
    list('limit empty', 'limit='),
    list('limit above listLimitMax', `limit=${max + 1}`),
    list('limit far above listLimitMax', 'limit=999999'),
    list('unknown state', 'state=done'),
    list('state in the wrong case', 'state=COMMITTED'),
    list('unknown query parameter', 'sort=asc'),
    list('malformed cursor', 'after=nope'),
  ]);
  const atMax = await h.app.inject({ method: 'GET', url: `/v1/transactions?limit=${max}&state=committed` });
  t.equal(atMax.statusCode, 200, 'limit=listLimitMax is accepted');
  t.same(atMax.json(), { transactions: [], next: null });
  await stillServes(t, h, p);
});

t.test('a body of a media type other than JSON is a 415 problem', async (t) => {
  const { h, p } = await setup(t);
  const body = JSON.stringify({ participants: [{ name: 'orders', url: p.url }], commit: true });
  await refuseAll(
    t,
    h,
    ['application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'image/png'].map(
      (type) => ({
        what: `content-type ${type}`,
        method: 'POST',
        url: '/v1/transactions',
        payload: body,
        headers: { 'content-type': type },
        status: 415,
      }),
    ),
  );
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('a text/plain body is a 415 problem too: JSON in, nothing else', async (t) => {
  // What fetch() sends for a string body without a content-type.
  const { h, p } = await setup(t);
  const body = JSON.stringify({ participants: [{ name: 'orders', url: p.url }], commit: true });
  await refuseAll(t, h, [
    {
      what: 'content-type text/plain',
      method: 'POST',
      url: '/v1/transactions',
      payload: body,
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      status: 415,
    },
    {
      what: 'content-type text/plain on an enlistment',
      method: 'POST',
      url: `/v1/transactions/${UNKNOWN_ID}/participants`,
      payload: JSON.stringify({ name: 'orders', url: p.url }),
      headers: { 'content-type': 'text/plain' },
      status: 415,
    },
  ]);
  t.equal(p.received.length, 0);
  await stillServes(t, h, p);
});

t.test('regressions found by fuzzing: deep nesting, bad percent-encoding, over-long ids', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close(true));
  const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const cases: Array<{ url: string; method: 'GET' | 'POST'; body?: string; status: number }> = [
    {
      method: 'POST',
      url: '/v1/transactions',
      body: `{"participants":[{"name":"a","url":"http://127.0.0.1:9/x","payload":${deep(5000)}}]}`,
      status: 400,
    },
    { method: 'POST', url: '/v1/transactions', body: `{"metadata":{"v":${deep(6000)}}}`, status: 400 },
    {
      method: 'POST',
      url: '/v1/transactions/tx_00000000000000000000000000/participants',
      body: `{"name":"a","url":"http://127.0.0.1:9/x","payload":${deep(5000)}}`,
      status: 400,
    },
    { method: 'GET', url: '/v1/transactions/%', status: 400 },
    { method: 'GET', url: '/v1/transactions/%E9', status: 400 },
    { method: 'POST', url: '/v1/transactions/%zz/prepare', status: 400 },
    { method: 'GET', url: `/v1/transactions/${'a'.repeat(101)}`, status: 414 },
  ];
  for (const c of cases) {
    const res = await h.app.inject({
      method: c.method,
      url: c.url,
      ...(c.body === undefined ? {} : { payload: c.body, headers: { 'content-type': 'application/json' } }),
    });
    t.equal(res.statusCode, c.status, `${c.method} ${c.url.slice(0, 60)}`);
    t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    t.match(res.json(), { status: c.status, type: String, title: String, detail: String });
  }
  const ok = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { participants: [], metadata: { nested: [[[[{ fine: true }]]]] } },
  });
  t.equal(ok.statusCode, 201, 'ordinary nesting is fine');
});
