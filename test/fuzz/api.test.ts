// Property-based fuzzing of the client API with fast-check.
//
// 1. Hostile single requests against every endpoint: JSON near the schema and
//    far from it, raw bytes, odd content types, methods, ids, paths and query
//    strings. Never a 5xx; every 4xx is an RFC 9457 problem document; a refused
//    request changes nothing (the transaction list, the fixtures and what the
//    participant heard); and a good request still commits afterwards.
// 2. Sequences of client calls against participants whose every answer is
//    generated too (yes, no, read-only, HTTP 500, a hang until the timeout, a
//    reset, garbage; phase-two failures). After every call: no 5xx, statuses
//    and bodies as docs/protocol.md says, an outcome never changes once seen, commit only
//    over yes/read-only votes. After every sequence, once all is settled: no
//    participant is left prepared, none committed where another aborted,
//    commit went only to yes voters, the outcome inquiry agrees.
//
// Seeded, so `npm test` is repeatable: FUZZ_SEED (a number, or "random"),
// FUZZ_RUNS (single requests, default 300) and FUZZ_SEQUENCES (default 50).
// On a failure fast-check reports the seed, the path and the shrunk
// counterexample; FUZZ_SEED=<seed> FUZZ_PATH=<path> replays just that case
// (set FUZZ_RUNS=0 or FUZZ_SEQUENCES=0 to skip the other part).

import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { TX_STATES } from '../../src/protocol/types.js';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';
import {
  type Received,
  type Reply,
  startParticipant,
  type TestParticipant,
  waitUntil,
} from '../support/participant.js';

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return n;
}

const SEED =
  process.env.FUZZ_SEED === 'random' ? (Date.now() ^ (Math.random() * 2 ** 31)) | 0 : envInt('FUZZ_SEED', 7070);
const RUNS = envInt('FUZZ_RUNS', 300);
const SEQUENCES = envInt('FUZZ_SEQUENCES', 50);
/** fast-check's path of a reported counterexample: with its seed, replays just that case. */
const PATH = process.env.FUZZ_PATH || undefined;

// Larger settings run longer than the suite's per-file timeout allows.
t.setTimeout(Math.max(180_000, RUNS * 60 + SEQUENCES * 3_000));

const STATES = TX_STATES;
const FINAL_STATES = new Set(['committed', 'aborted']);
const UNKNOWN_ID = 'tx_00000000000000000000000000';

/** Runs a property under the seed; a failure is reported with fast-check's own message (seed, path, counterexample). */
async function check<T>(tt: Test, what: string, property: fc.IAsyncProperty<T>, numRuns: number): Promise<void> {
  if (numRuns === 0) {
    tt.pass(`${what}: 0 runs asked for`);
    return;
  }
  const started = Date.now();
  const details = await fc.check(property, { seed: SEED, numRuns, ...(PATH === undefined ? {} : { path: PATH }) });
  if (details.failed) {
    const error =
      details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    tt.fail(`${what}: ${error.split('\n')[0]}`, {
      diagnostic: true,
      replay: `FUZZ_SEED=${SEED} FUZZ_PATH=${details.counterexamplePath}`,
      counterexample: fc.stringify(details.counterexample),
      error,
      report: fc.defaultReportMessage(details),
    });
    return;
  }
  tt.pass(`${what}: ${details.numRuns} runs passed (seed ${SEED}, ${Date.now() - started} ms)`);
}

// ---------------------------------------------------------------------------
// Responses

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(res: LightMyRequestResponse): string {
  const body = res.body.length > 400 ? `${res.body.slice(0, 400)}…` : res.body;
  return `${res.statusCode} ${String(res.headers['content-type'] ?? '(no content-type)')} ${body}`;
}

/** Why a 4xx is not an RFC 9457 problem document, or null when it is one. */
function problemViolation(res: LightMyRequestResponse, method: string): string | null {
  const type = String(res.headers['content-type'] ?? '');
  if (!/^application\/problem\+json(\s*;|$)/.test(type)) return `content-type ${JSON.stringify(type)}`;
  if (method === 'HEAD') return null; // no body to check
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    return 'the body is not JSON';
  }
  if (!isObject(body)) return 'the body is not a JSON object';
  for (const key of ['type', 'title', 'detail']) {
    if (typeof body[key] !== 'string' || body[key] === '') return `"${key}" is not a non-empty string`;
  }
  if (body.status !== res.statusCode) return `"status" is ${JSON.stringify(body.status)}, not ${res.statusCode}`;
  return null;
}

// ---------------------------------------------------------------------------
// Part 1: hostile single requests
//
// Requests are generated as templates, so counterexamples stay short and
// readable: {active} {prepared} {committed} {aborted} {unknown} stand for
// transaction ids, {host} and {url} for the test participant, and ⟦n×s⟧ for s
// repeated n times (huge strings, deep nesting).

interface HostileRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** JSON (or any) text, or raw bytes. */
  readonly body: string | Uint8Array | null;
}

const rep = (n: number, s: string) => `⟦${n}×${s}⟧`;
const jsonString = (s: string) => JSON.stringify(s);
/** A JSON string of `n` copies of `unit`, written as a template. */
const hugeJsonString = (unit: string, n: number) => `"${rep(n, JSON.stringify(unit).slice(1, -1))}"`;
const objectText = (entries: ReadonlyArray<readonly [string, string]>) =>
  `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

function expand(template: string, ids: Readonly<Record<string, string>>, host: string): string {
  return template
    .replace(/⟦(\d+)×([^⟦⟧]*)⟧/g, (_m, n: string, s: string) => s.repeat(Number(n)))
    .replace(/\{(active|prepared|committed|aborted|unknown)\}/g, (_m, kind: string) => ids[kind] ?? UNKNOWN_ID)
    .replace(/\{url\}/g, `http://${host}/tx`)
    .replace(/\{host\}/g, host);
}

const printableAscii = fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c));

const sizes = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 129, 254, 255, 256, 2047, 2048, 2049, 8185, 8192, 8200, 16_382, 16_384, 16_400),
  fc.constantFrom(131_072, 140_000),
  fc.nat(20_000),
);

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\ud800',
    '\udfff\ud800',
    '\ufeff',
    '\u202e',
    'null',
    'NaN',
    'Infinity',
    '-0',
    '1e400',
    'true',
    '__proto__',
    'constructor',
    'prototype',
    '{url}',
    "'; DROP TABLE transactions; --",
    '../../etc/passwd',
    '%00',
    '𝕏𝕏𝕏',
    'é',
  ),
);

/** Literal JSON text that JSON.parse accepts or refuses: what a hostile client can type. */
const rawJsonToken = fc.constantFrom(
  'NaN',
  'Infinity',
  '-Infinity',
  '1e400',
  '-1e400',
  '-0',
  '0.0',
  '1E2',
  '9007199254740993',
  '123456789012345678901234567890',
  '0x10',
  '01',
  '.5',
  '+1',
  'undefined',
  '"\\ud800"',
  '"\\u0000"',
  '"\\udfff\\ud800"',
  'true',
  'false',
  'null',
  '[]',
  '{}',
  '""',
  '{"__proto__":{"commit":true}}',
  '{"constructor":{"prototype":{"commit":true}}}',
  '[1,]',
  '{"a":1,}',
  "{'a':1}",
  '{"a" 1}',
  '[',
  '"unterminated',
);

const deepJson = fc
  .tuple(
    fc.constantFrom('array', 'object', 'mixed'),
    fc.oneof(fc.constantFrom(64, 1000, 2500, 4000, 5000, 6000, 10_000, 30_000), fc.integer({ min: 1, max: 8000 })),
  )
  .map(([kind, n]) => {
    if (kind === 'array') return `${rep(n, '[')}${rep(n, ']')}`;
    if (kind === 'object') return `${rep(n, '{"a":')}1${rep(n, '}')}`;
    return `${rep(n, '[{"a":')}[]${rep(n, '}]')}`;
  });

const jsonText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 2, arbitrary: rawJsonToken },
  { weight: 1, arbitrary: deepJson },
  { weight: 2, arbitrary: hostileString.map(jsonString) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('x', 'é', '😀', '\\', '"', '\u0000'), sizes)
      .map(([u, n]) => hugeJsonString(u, n)),
  },
);

const extraKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'vote', 'Name', 'url '),
  fc.string({ maxLength: 10 }),
);
/** Valid values seven times in eight: a request must get past validation to reach the handlers. */
function mostly<T>(valid: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return fc.oneof({ weight: 7, arbitrary: valid }, { weight: 1, arbitrary: hostile });
}

const extras = fc.array(fc.tuple(extraKey, jsonText), { maxLength: 2 });

const goodName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/);
const nameText = mostly(
  goodName.map(jsonString),
  fc.oneof(
    hostileString.map(jsonString),
    fc.constantFrom(127, 128, 129, 500).map((n) => hugeJsonString('n', n)),
    jsonText,
  ),
);

/** Urls the participant answers at: always {host} itself, whatever the path, so nothing goes astray. */
const goodUrl = fc
  .tuple(
    fc.constantFrom('http://', 'HTTP://', 'hTtP://'),
    fc.oneof(
      fc.constantFrom('', '/', '/tx', '/tx/', '/a/b/c', '/é', '/%20', '/..', '/%2e%2e/', '/tx//', '/tx?'),
      fc.string({ maxLength: 20 }).map((s) => `/${s}`),
      fc.constantFrom(2000, 2030, 2040, 2048, 2100).map((n) => `/${rep(n, 'p')}`),
    ),
  )
  .map(([scheme, path]) => `${scheme}{host}${path}`);
const badUrl = fc.oneof(
  fc.constantFrom(
    '',
    'ftp://{host}/tx',
    'javascript:alert(1)',
    'file:///etc/passwd',
    '//{host}/tx',
    'http://',
    'https://',
    'http:///x',
    'http://user:pw@{host}/tx',
    'http://user@{host}/tx',
    'http://{host}/tx?x=1',
    'http://{host}/tx#f',
    'http://[::1/',
    'http://exa mple.com/',
    'http://%zz/',
    'http://{host}9999999/',
    'mailto:a@b',
    'data:text/plain,x',
    'ws://{host}/',
    ' http://{host}/tx',
  ),
  fc.string({ maxLength: 30 }),
);
const urlText = mostly(goodUrl.map(jsonString), fc.oneof(badUrl.map(jsonString), jsonText));
const validJson = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: deepJson },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('x', 'é', '😀', '\\', '"', '\u0000'), sizes)
      .map(([u, n]) => hugeJsonString(u, n)),
  },
);
const payloadText = fc.oneof(
  { weight: 4, arbitrary: validJson },
  { weight: 1, arbitrary: fc.integer({ min: 16_370, max: 16_400 }).map((n) => hugeJsonString('p', n - 2)) },
  { weight: 1, arbitrary: jsonText },
);
/** Mostly none: any extra key makes a body invalid, and the valid ones should reach the handlers too. */
const fewExtras = fc.oneof({ weight: 6, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: extras });

const participantText = mostly(
  fc
    .record({
      name: nameText,
      url: urlText,
      payload: fc.option(payloadText, { nil: undefined }),
      drop: fc.oneof(
        { weight: 8, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.constantFrom('name', 'url') },
      ),
      extras: fewExtras,
    })
    .map(({ name, url, payload, drop, extras }) => {
      const entries: Array<readonly [string, string]> = [];
      if (drop !== 'name') entries.push(['name', name]);
      if (drop !== 'url') entries.push(['url', url]);
      if (payload !== undefined) entries.push(['payload', payload]);
      return objectText([...entries, ...extras]);
    }),
  jsonText,
);

const participantsText = mostly(
  fc.array(participantText, { maxLength: 3 }).map((items) => `[${items.join(',')}]`),
  fc.oneof(
    fc
      .constantFrom(8, 9, 20)
      .map((n) => `[${Array.from({ length: n }, (_, i) => `{"name":"p${i}","url":"{url}"}`).join(',')}]`),
    fc.constant('[{"name":"twice","url":"{url}"},{"name":"twice","url":"{url}"}]'),
    jsonText,
  ),
);

const timeoutText = mostly(
  fc.oneof(
    fc.constantFrom(100, 101, 30_000, 86_399_999, 86_400_000).map(String),
    fc.integer({ min: 100, max: 86_400_000 }).map(String),
    fc.constantFrom('100.0', '1e2', '1e3', '1000.000'),
  ),
  fc.oneof(
    fc.constantFrom(0, -1, 1, 99, 86_400_001, 2 ** 31, 2 ** 53, -(2 ** 53)).map(String),
    fc.integer().map(String),
    fc.double().map((x) => JSON.stringify(x)),
    fc.constantFrom('1e21', '-0', '1.5', '"5000"', 'NaN', 'Infinity', '1e400', '100.00000000000001'),
    jsonText,
  ),
);

const keyText = mostly(
  fc.oneof(
    fc.string({ minLength: 1, maxLength: 12 }).map(jsonString),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).map(jsonString),
    fc.constantFrom(1, 254, 255).map((n) => hugeJsonString('k', n)),
  ),
  fc.oneof(
    fc.constantFrom(0, 256, 1000).map((n) => hugeJsonString('k', n)),
    hostileString.map(jsonString),
    jsonText,
  ),
);

const metadataText = mostly(
  fc.oneof(
    fc
      .dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
      .map((v) => JSON.stringify(v)),
    fc.integer({ min: 8180, max: 8200 }).map((n) => `{"m":${hugeJsonString('m', n - 8)}}`),
    validJson.map((v) => `{"v":${v}}`),
  ),
  fc.oneof(fc.constant('{"__proto__":{"x":1}}'), jsonText),
);

const commitText = mostly(
  fc.constantFrom('true', 'false'),
  fc.oneof(fc.constantFrom('"true"', '1', '0', 'null', '[]'), jsonText),
);

const beginText = mostly(
  fc
    .record(
      {
        participants: participantsText,
        timeoutMs: timeoutText,
        idempotencyKey: keyText,
        metadata: metadataText,
        commit: commitText,
        extras: fewExtras,
      },
      { requiredKeys: ['extras'] },
    )
    .map(({ extras, ...fields }) =>
      objectText([...Object.entries(fields).filter((e): e is [string, string] => e[1] !== undefined), ...extras]),
    ),
  jsonText,
);

const jsonContentType = fc.oneof(
  { weight: 24, arbitrary: fc.constant<string | null>('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom<string | null>(
      'application/json; charset=utf-8',
      'Application/JSON',
      'application/json;',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/json, text/plain',
      'application/vnd.api+json',
      'application/problem+json',
      'text/plain',
      'text/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      '*/*',
      '',
      ';',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: printableAscii, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constant(null) },
);

const extraHeaders = fc.oneof(
  { weight: 12, arbitrary: fc.constant({}) },
  {
    weight: 1,
    arbitrary: fc.record(
      {
        'content-length': fc.nat(300).map(String),
        'content-encoding': fc.constantFrom('gzip', 'br', 'deflate', 'identity', 'x-unknown'),
        'transfer-encoding': fc.constantFrom('chunked', 'gzip, chunked'),
        accept: fc.constantFrom('text/html', 'application/xml', '*/*'),
        'x-http-method-override': fc.constantFrom('DELETE', 'PUT'),
        authorization: fc.constantFrom('Bearer x', 'Basic eDp5', ''),
        'x-commitd-transaction': fc.constantFrom('{active}', 'nope'),
      },
      { requiredKeys: [] },
    ),
  },
);

const fixtureToken = fc.constantFrom('{active}', '{prepared}', '{committed}', '{aborted}', '{unknown}');
const malformedId = fc.oneof(
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    'tx_',
    'tx_0000000000000000000000000',
    'tx_000000000000000000000000000',
    'tx_0000000000000000000000000I',
    'tx_0000000000000000000000000L',
    'tx_0000000000000000000000000O',
    'tx_0000000000000000000000000U',
    'TX_00000000000000000000000000',
    'tx_00000000000000000000000000%00',
    '%74x_00000000000000000000000000',
    '..',
    '.',
    '%2e%2e',
    '%2F',
    '%00',
    '%zz',
    '%',
    '%E9',
    '%C0%AF',
    '%ED%A0%80',
    'null',
    '__proto__',
    'constructor',
    '*',
    '',
  ),
  fc.integer({ min: 90, max: 3000 }).map((n) => rep(n, 'a')),
);
const idSegment = fc.oneof({ weight: 6, arbitrary: fixtureToken }, { weight: 4, arbitrary: malformedId });

const queryKey = fc.oneof(
  fc.constantFrom(
    'state',
    'limit',
    'after',
    'State',
    'LIMIT',
    'limit[]',
    'limit[0]',
    'state[]',
    '__proto__',
    'constructor',
    'prototype',
    'hasOwnProperty',
    '__proto__[limit]',
  ),
  fc.string({ maxLength: 10 }),
);
const queryValue = fc.oneof(
  fc.constantFrom(...STATES, 'COMMITTED', 'done', ''),
  fc.constantFrom(
    '0',
    '1',
    '50',
    '499',
    '500',
    '501',
    '999999',
    '1000000',
    '-1',
    '+1',
    '1.5',
    '1e2',
    '0x10',
    ' 1',
    '01',
  ),
  fc.constantFrom('NaN', 'Infinity', rep(400, '9')),
  fc.constantFrom('{active}', '{prepared}', '{committed}', '{aborted}', '{unknown}', 'tx_'),
  fc.nat().map(String),
  fc.string({ maxLength: 20 }),
);
const queryString = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  {
    weight: 6,
    arbitrary: fc
      .array(fc.tuple(queryKey, queryValue, fc.boolean()), { maxLength: 4 })
      .map(
        (entries) =>
          `?${entries.map(([k, v, encode]) => (encode ? `${encodeURIComponent(k)}=${encodeURIComponent(v)}` : `${k}=${v}`)).join('&')}`,
      ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '?',
      '??',
      '?&',
      '?&&&',
      '?=',
      '?=1',
      '?limit',
      '?limit&limit',
      '?%zz',
      '?limit=%zz',
      '?state=%00',
      '?limit=1#x',
      '?;limit=1',
    ),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(queryKey, queryValue, fc.integer({ min: 100, max: 20_000 }))
      .map(([k, v, n]) => `?${rep(n, `${encodeURIComponent(k)}=${encodeURIComponent(v)}&`)}`),
  },
);

const anyPath = fc.oneof(
  fc.constant('/v1/transactions'),
  idSegment.map((id) => `/v1/transactions/${id}`),
  fc
    .tuple(idSegment, fc.constantFrom('participants', 'prepare', 'commit', 'abort', 'outcome'))
    .map(([id, action]) => `/v1/transactions/${id}/${action}`),
  fc.tuple(idSegment, fc.string({ maxLength: 12 })).map(([id, s]) => `/v1/transactions/${id}/${encodeURIComponent(s)}`),
  fc.constantFrom(
    '/',
    '/v1',
    '/v1/',
    '/v1/transactions/',
    '//v1/transactions',
    '/v1//transactions',
    '/V1/transactions',
    '/v1/Transactions',
    '/v2/transactions',
    '/v1/transactions/{committed}/commit/',
    '/v1/transactions/{active}/../{prepared}/commit',
    '/v1/transactions/%2e%2e/transactions',
    '/healthz',
    '/readyz',
    '/metrics',
    '/docs/json',
    'v1/transactions',
  ),
  fc.integer({ min: 100, max: 100_000 }).map((n) => `/v1/transactions/${rep(n, 'x')}`),
);

const actionBody = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ body: null as string | null, type: null as string | null }) },
  { weight: 2, arbitrary: fc.constant({ body: '', type: 'application/json' }) },
  { weight: 1, arbitrary: fc.constant({ body: '{}', type: 'application/json' }) },
  { weight: 2, arbitrary: fc.record({ body: jsonText, type: jsonContentType }) },
);

const method = (usual: string) =>
  fc.oneof({ weight: 9, arbitrary: fc.constant(usual) }, { weight: 1, arbitrary: fc.constantFrom(...http.METHODS) });

const withType = (type: string | null, headers: Record<string, string>): Record<string, string> =>
  type === null ? headers : { ...headers, 'content-type': type };

const hostileRequest: fc.Arbitrary<HostileRequest> = fc.oneof(
  fc
    .record({ method: method('POST'), body: beginText, type: jsonContentType, headers: extraHeaders })
    .map((r) => ({ method: r.method, url: '/v1/transactions', headers: withType(r.type, r.headers), body: r.body })),
  fc
    .record({
      method: method('POST'),
      id: idSegment,
      body: participantText,
      type: jsonContentType,
      headers: extraHeaders,
    })
    .map((r) => ({
      method: r.method,
      url: `/v1/transactions/${r.id}/participants`,
      headers: withType(r.type, r.headers),
      body: r.body,
    })),
  fc
    .record({
      method: method('POST'),
      id: idSegment,
      action: fc.constantFrom('prepare', 'commit', 'abort'),
      body: actionBody,
      headers: extraHeaders,
    })
    .map((r) => ({
      method: r.method,
      url: `/v1/transactions/${r.id}/${r.action}`,
      headers: withType(r.body.type, r.headers),
      body: r.body.body,
    })),
  fc.record({ method: method('GET'), id: idSegment, outcome: fc.boolean(), query: queryString }).map((r) => ({
    method: r.method,
    url: `/v1/transactions/${r.id}${r.outcome ? '/outcome' : ''}${r.query}`,
    headers: {},
    body: null,
  })),
  fc
    .record({ method: method('GET'), query: queryString })
    .map((r) => ({ method: r.method, url: `/v1/transactions${r.query}`, headers: {}, body: null })),
  fc
    .record({
      method: fc.constantFrom(...http.METHODS),
      path: anyPath,
      query: queryString,
      body: fc.oneof(
        fc.constant(null),
        fc.uint8Array({ maxLength: 512 }),
        fc.constantFrom(0, 1, 131_072, 140_000).map((n) => rep(n, 'b')),
        jsonText,
      ),
      type: jsonContentType,
      headers: extraHeaders,
    })
    .map((r) => ({ method: r.method, url: `${r.path}${r.query}`, headers: withType(r.type, r.headers), body: r.body })),
);

/** A participant that votes yes and acknowledges everything: fixtures and good requests finish at once. */
const agreeable = (m: Received): Reply =>
  m.action === 'prepare' ? { status: 200, body: { vote: 'yes' } } : { status: 200 };

const HOSTILE_LIMITS: Overrides = {
  server: { bodyLimitBytes: 131_072 },
  transactions: {
    maxParticipants: 8,
    maxPayloadBytes: 16_384,
    maxMetadataBytes: 8_192,
    timeoutMsMin: 100,
    timeoutMsMax: 86_400_000,
    defaultTimeoutMs: 30_000,
    listLimitDefault: 50,
    listLimitMax: 500,
    // Nothing is forgotten while the fuzzer compares states.
    retentionMs: 86_400_000,
  },
  participants: { prepareTimeoutMs: 150, phaseTwoTimeoutMs: 150, retryDelayMsMin: 5, retryDelayMsMax: 20 },
};

/**
 * The world of part 1: a commitd, an agreeable participant, and one
 * transaction in each of the states the generated ids point at.
 */
class HostileWorld {
  readonly fixtures: Record<string, string> = { unknown: UNKNOWN_ID };
  private readonly expectedState: Record<string, string> = {
    active: 'active',
    prepared: 'prepared',
    committed: 'committed',
    aborted: 'aborted',
  };

  constructor(
    readonly h: Harness,
    readonly p: TestParticipant,
  ) {}

  get host(): string {
    return new URL(this.p.url).host;
  }

  private async inject(options: InjectOptions): Promise<LightMyRequestResponse> {
    return this.h.app.inject(options);
  }

  private async json(options: InjectOptions, status: number): Promise<any> {
    const res = await this.inject(options);
    if (res.statusCode !== status)
      throw new Error(`${options.method} ${options.url}: expected ${status}, got ${describe(res)}`);
    return res.json();
  }

  private begin(body: unknown, status = 201): Promise<any> {
    return this.json({ method: 'POST', url: '/v1/transactions', payload: body as object }, status);
  }

  private async makeFixture(kind: string): Promise<string> {
    const participants = [{ name: 'fixture', url: this.p.url }];
    switch (kind) {
      case 'active':
        return (await this.begin({ participants, timeoutMs: 86_400_000 })).id;
      case 'prepared': {
        const { id } = await this.begin({ participants, timeoutMs: 86_400_000 });
        await this.json({ method: 'POST', url: `/v1/transactions/${id}/prepare` }, 200);
        return id;
      }
      case 'committed':
        return (await this.begin({ participants, commit: true }, 200)).id;
      default: {
        const { id } = await this.begin({ participants, timeoutMs: 86_400_000 });
        await this.json({ method: 'POST', url: `/v1/transactions/${id}/abort` }, 200);
        await waitUntil(
          async () => (await this.h.coordinator.reads.get(id)).state === 'aborted',
          5_000,
          `fixture ${id} aborted`,
        );
        return id;
      }
    }
  }

  /** Replaces every fixture that is no longer in its state, or has grown too many participants to enlist more. */
  async ensureFixtures(): Promise<void> {
    for (const [kind, state] of Object.entries(this.expectedState)) {
      const id = this.fixtures[kind];
      if (id !== undefined) {
        const res = await this.inject({ method: 'GET', url: `/v1/transactions/${id}` });
        const tx = res.statusCode === 200 ? res.json() : null;
        if (tx !== null && tx.state === state && tx.participants.length < 4) continue;
      }
      this.fixtures[kind] = await this.makeFixture(kind);
    }
  }

  private isFixture(id: string): boolean {
    return Object.values(this.fixtures).includes(id);
  }

  /** Everything a refused request must leave alone. */
  async snapshot(): Promise<string> {
    const list = await this.json({ method: 'GET', url: '/v1/transactions?limit=500' }, 200);
    const fixtures = [];
    for (const id of Object.values(this.fixtures)) {
      const res = await this.inject({ method: 'GET', url: `/v1/transactions/${id}` });
      const outcome = await this.inject({ method: 'GET', url: `/v1/transactions/${id}/outcome` });
      fixtures.push([res.statusCode, res.body, outcome.body]);
    }
    return JSON.stringify({ list, fixtures, received: this.p.received.length, errors: this.h.errors.length });
  }

  /** After an accepted request: abort what it left undecided and wait until every transaction has finished. */
  async quiesce(): Promise<void> {
    await this.ensureFixtures();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { transactions } = await this.json({ method: 'GET', url: '/v1/transactions?limit=500' }, 200);
      const pending = (transactions as any[]).filter((tx) => !FINAL_STATES.has(tx.state) && !this.isFixture(tx.id));
      if (pending.length === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`transactions did not finish: ${pending.map((tx) => `${tx.id} ${tx.state}`).join(', ')}`);
      }
      for (const tx of pending) {
        if (tx.outcome !== null) continue;
        const res = await this.inject({ method: 'POST', url: `/v1/transactions/${tx.id}/abort` });
        if (res.statusCode >= 500) throw new Error(`abort of ${tx.id}: ${describe(res)}`);
      }
      await sleep(5);
    }
  }

  /** A good request: a one-shot commit with the participant still commits. */
  async goodRequest(): Promise<void> {
    const before = this.p.count('commit');
    const tx = await this.begin({ participants: [{ name: 'good', url: this.p.url }], commit: true }, 200);
    if (tx.state !== 'committed') throw new Error(`a good one-shot commit answered state ${tx.state}`);
    if (this.p.count('commit') !== before + 1) throw new Error('the good transaction did not reach its participant');
  }

  toInject(r: HostileRequest): InjectOptions {
    const url = expand(r.url, this.fixtures, this.host);
    const headers = Object.fromEntries(
      Object.entries(r.headers).map(([k, v]) => [k, expand(v, this.fixtures, this.host)]),
    );
    const payload =
      r.body === null
        ? undefined
        : typeof r.body === 'string'
          ? expand(r.body, this.fixtures, this.host)
          : Buffer.from(r.body);
    return { method: r.method as InjectOptions['method'], url, headers, ...(payload === undefined ? {} : { payload }) };
  }
}

function firstDifference(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `before …${a.slice(Math.max(0, i - 80), i + 200)}…\nafter  …${b.slice(Math.max(0, i - 80), i + 200)}…`;
}

async function hostileRun(world: HostileWorld, r: HostileRequest): Promise<void> {
  const options = world.toInject(r);
  const method = String(options.method);
  const before = await world.snapshot();
  const res = await world.h.app.inject(options);
  const what = `${method} ${String(options.url).slice(0, 200)}`;
  if (res.statusCode >= 500) throw new Error(`${what}: a 5xx: ${describe(res)}`);
  if (res.statusCode >= 400) {
    const violation = problemViolation(res, method);
    if (violation !== null) {
      throw new Error(`${what}: a ${res.statusCode} that is not a problem document (${violation}): ${describe(res)}`);
    }
  } else if (res.statusCode >= 200 && res.statusCode < 300 && method !== 'HEAD' && what.includes('/v1/transactions')) {
    const type = String(res.headers['content-type'] ?? '');
    let json = /^application\/json(\s*;|$)/.test(type);
    try {
      JSON.parse(res.body);
    } catch {
      json = false;
    }
    if (!json) throw new Error(`${what}: a ${res.statusCode} that is not JSON: ${describe(res)}`);
  }
  // A refusal, and any read, leaves everything as it was.
  if (res.statusCode >= 400 || method === 'GET' || method === 'HEAD') {
    const after = await world.snapshot();
    if (after !== before) {
      throw new Error(`${what}: answered ${res.statusCode}, yet state changed:\n${firstDifference(before, after)}`);
    }
  } else {
    await world.quiesce();
  }
  if (world.h.errors.length > 0) throw new Error(`${what}: internal errors: ${world.h.errors.map(String).join('; ')}`);
  await world.goodRequest();
}

t.test('hostile single requests: no 5xx, 4xx are problems, refusals change nothing', async (tt) => {
  const h = await startHarness(HOSTILE_LIMITS);
  const p = await startParticipant(agreeable);
  tt.teardown(async () => {
    await h.close(true);
    await p.close();
  });
  const world = new HostileWorld(h, p);
  await world.ensureFixtures();
  await check(
    tt,
    'hostile single requests',
    fc.asyncProperty(hostileRequest, (r) => hostileRun(world, r)),
    RUNS,
  );
});

// ---------------------------------------------------------------------------
// Part 2: sequences of client calls

type PrepareScript = 'yes' | 'slow-yes' | 'no' | 'read-only' | 'http-500' | 'hang' | 'garbage' | 'reset';
type FailMode = 'http-500' | 'hang' | 'reset';

/** How one participant of one transaction answers every message it gets. */
interface Script {
  readonly prepare: PrepareScript;
  /** Phase-two messages that fail (in `failMode`) before one succeeds. */
  readonly commitFailures: number;
  readonly abortFailures: number;
  readonly failMode: FailMode;
}

type Call = 'prepare' | 'commit' | 'abort' | 'get' | 'outcome';

type Command =
  | {
      readonly kind: 'begin';
      readonly participants: ReadonlyArray<{ readonly server: number; readonly script: Script }>;
      readonly oneShot: boolean;
      readonly timeoutMs: number | null;
      readonly keyed: boolean;
      /** More than one: the same keyed begin sent that many times at once, as a client retrying in a hurry. */
      readonly copies: number;
    }
  | { readonly kind: 'again'; readonly tx: number; readonly same: boolean }
  | {
      readonly kind: 'enlist';
      readonly tx: number;
      readonly mode: 'new' | 'repeat' | 'conflict';
      readonly server: number;
      readonly script: Script;
    }
  | { readonly kind: 'call'; readonly tx: number; readonly call: Call }
  /** Calls at the same time on one transaction; at most one enlists a new participant. */
  | {
      readonly kind: 'race';
      readonly tx: number;
      readonly calls: ReadonlyArray<Call | 'enlist'>;
      readonly script: Script;
    }
  | { readonly kind: 'sleep'; readonly ms: number };

const POOL = 4;

const scriptArb: fc.Arbitrary<Script> = fc.record({
  prepare: fc.oneof(
    { weight: 10, arbitrary: fc.constant<PrepareScript>('yes') },
    { weight: 2, arbitrary: fc.constant<PrepareScript>('slow-yes') },
    { weight: 3, arbitrary: fc.constant<PrepareScript>('read-only') },
    { weight: 2, arbitrary: fc.constant<PrepareScript>('no') },
    { weight: 1, arbitrary: fc.constantFrom<PrepareScript>('http-500', 'hang', 'garbage', 'reset') },
  ),
  commitFailures: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }) },
  ),
  abortFailures: fc.oneof(
    { weight: 3, arbitrary: fc.constant(0) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 }) },
  ),
  failMode: fc.oneof(
    { weight: 4, arbitrary: fc.constant<FailMode>('http-500') },
    { weight: 2, arbitrary: fc.constant<FailMode>('reset') },
    { weight: 1, arbitrary: fc.constant<FailMode>('hang') },
  ),
});

const txRef = fc.nat(7);
const callArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<Call>('prepare', 'commit', 'abort') },
  { weight: 1, arbitrary: fc.constantFrom<Call>('get', 'outcome') },
);

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('begin' as const),
      participants: fc.uniqueArray(fc.record({ server: fc.nat(POOL - 1), script: scriptArb }), {
        maxLength: 3,
        selector: (p) => p.server,
      }),
      oneShot: fc.boolean(),
      timeoutMs: fc.oneof(
        { weight: 3, arbitrary: fc.constant(null) },
        { weight: 3, arbitrary: fc.integer({ min: 100, max: 400 }) },
        { weight: 1, arbitrary: fc.constant(10_000) },
      ),
      keyed: fc.boolean(),
      copies: fc.oneof(
        { weight: 5, arbitrary: fc.constant(1) },
        { weight: 1, arbitrary: fc.integer({ min: 2, max: 3 }) },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('again' as const), tx: txRef, same: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('enlist' as const),
      tx: txRef,
      mode: fc.constantFrom('new' as const, 'new' as const, 'repeat' as const, 'conflict' as const),
      server: fc.nat(POOL - 1),
      script: scriptArb,
    }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('call' as const), tx: txRef, call: callArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('race' as const),
      tx: txRef,
      calls: fc.array(
        fc.oneof({ weight: 4, arbitrary: callArb }, { weight: 1, arbitrary: fc.constant('enlist' as const) }),
        {
          minLength: 2,
          maxLength: 3,
        },
      ),
      script: scriptArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sleep' as const), ms: fc.integer({ min: 0, max: 300 }) }) },
);

type Answered = 'yes' | 'no' | 'read-only' | 'lost';

interface ParticipantModel {
  readonly name: string;
  readonly server: number;
  readonly url: string;
}

interface TxModel {
  readonly id: string;
  readonly oneShot: boolean;
  readonly key: string | null;
  readonly body: Record<string, unknown>;
  readonly participants: ParticipantModel[];
  /** The outcome first seen anywhere; it may never differ afterwards. */
  outcome: 'commit' | 'abort' | null;
}

/**
 * The pool of participants of part 2. Every participant name is unique in
 * the whole test, so its script is found by the name each message carries;
 * and a transaction has at most one participant per server, so a server's
 * `states` entry for a transaction is that participant's local state.
 */
class Pool {
  readonly servers: TestParticipant[] = [];
  readonly scripts = new Map<string, Script>();
  /** What each participant answered to prepare, by `${txId}/${name}`. */
  readonly answers = new Map<string, Answered>();
  private readonly phaseTwoAttempts = new Map<string, number>();
  private names = 0;

  async start(): Promise<void> {
    for (let i = 0; i < POOL; i++) this.servers.push(await startParticipant((m, p) => this.reply(m, p)));
  }

  async close(): Promise<void> {
    for (const s of this.servers) await s.close();
  }

  server(i: number): TestParticipant {
    const s = this.servers[i];
    if (s === undefined) throw new Error(`no server ${i}`);
    return s;
  }

  newName(script: Script): string {
    const name = `f${this.names++}`;
    this.scripts.set(name, script);
    return name;
  }

  private failure(mode: FailMode): Reply {
    if (mode === 'hang') return 'hang';
    if (mode === 'reset') return 'reset';
    return { status: 500, body: { error: 'scripted failure' } };
  }

  private reply(m: Received, p: TestParticipant): Reply {
    const name = String(m.body.participant);
    const script = this.scripts.get(name);
    if (script === undefined) return { status: 500, body: { error: `unknown participant ${name}` } };
    const key = `${m.txId}/${name}`;
    const state = p.states.get(m.txId);
    if (m.action === 'prepare') {
      if (state === 'aborted' || state === 'committed') {
        this.answers.set(key, 'no');
        return { status: 200, body: { vote: 'no', reason: `already ${state}` } };
      }
      switch (script.prepare) {
        case 'yes':
        case 'slow-yes':
          p.states.set(m.txId, 'prepared');
          this.answers.set(key, 'yes');
          return { status: 200, body: { vote: 'yes' }, delayMs: script.prepare === 'slow-yes' ? 40 : 0 };
        case 'no':
          p.states.set(m.txId, 'refused');
          this.answers.set(key, 'no');
          return { status: 200, body: { vote: 'no', reason: 'scripted' } };
        case 'read-only':
          this.answers.set(key, 'read-only');
          return { status: 200, body: { vote: 'read-only' } };
        default:
          // The worst case of a lost answer: the participant did prepare.
          p.states.set(m.txId, 'prepared');
          this.answers.set(key, 'lost');
          if (script.prepare === 'garbage') return { status: 200, body: { vote: 'maybe' } };
          return this.failure(script.prepare === 'http-500' ? 'http-500' : script.prepare);
      }
    }
    const attemptKey = `${key}/${m.action}`;
    const attempts = (this.phaseTwoAttempts.get(attemptKey) ?? 0) + 1;
    this.phaseTwoAttempts.set(attemptKey, attempts);
    const failures = m.action === 'commit' ? script.commitFailures : script.abortFailures;
    if (attempts <= failures) return this.failure(script.failMode);
    if (m.action === 'commit') {
      if (state === 'aborted') return { status: 409, body: { heuristic: 'abort' } };
      p.states.set(m.txId, 'committed');
      return { status: 200 };
    }
    if (state === 'committed') return { status: 409, body: { heuristic: 'commit' } };
    p.states.set(m.txId, 'aborted');
    return state === undefined ? { status: 404 } : { status: 200 };
  }
}

class SequenceRun {
  readonly txs: TxModel[] = [];
  readonly trace: string[] = [];
  private keys = 0;

  constructor(
    readonly h: Harness,
    readonly pool: Pool,
    private readonly runId: number,
  ) {}

  private fail(message: string): never {
    throw new Error(`${message}\ntrace:\n  ${this.trace.join('\n  ')}`);
  }

  private tx(ref: number): TxModel | undefined {
    return this.txs.length === 0 ? undefined : this.txs[ref % this.txs.length];
  }

  private async inject(method: 'GET' | 'POST', url: string, payload?: object): Promise<LightMyRequestResponse> {
    const res = await this.h.app.inject({ method, url, ...(payload === undefined ? {} : { payload }) });
    this.trace.push(`${method} ${url} -> ${res.statusCode} ${summary(res)}`);
    if (res.statusCode >= 500) this.fail(`${method} ${url}: a 5xx: ${describe(res)}`);
    if (res.statusCode >= 400) {
      const violation = problemViolation(res, method);
      if (violation !== null) this.fail(`${method} ${url}: a ${res.statusCode} that is not a problem (${violation})`);
    }
    return res;
  }

  private expectStatus(res: LightMyRequestResponse, allowed: readonly number[], what: string): void {
    if (!allowed.includes(res.statusCode))
      this.fail(`${what}: status ${res.statusCode}, expected one of ${allowed.join(', ')}: ${describe(res)}`);
  }

  /**
   * Checks one view of a transaction against everything known of it. `ordered`:
   * the view is the newest there is (not one of several concurrent answers), so
   * an outcome seen before must be in it.
   */
  observe(model: TxModel, view: any, ordered: boolean): void {
    const where = `transaction ${model.id}`;
    if (!isObject(view) || view.id !== model.id) this.fail(`${where}: the view is of ${JSON.stringify(view?.id)}`);
    const { state, outcome } = view;
    const expectedOutcome =
      state === 'committing' || state === 'committed'
        ? 'commit'
        : state === 'aborting' || state === 'aborted'
          ? 'abort'
          : null;
    if (outcome !== expectedOutcome) this.fail(`${where}: state ${state} with outcome ${outcome}`);
    if (outcome !== null) {
      if (model.outcome !== null && model.outcome !== outcome)
        this.fail(`${where}: outcome ${model.outcome} became ${outcome}`);
      model.outcome = outcome;
    } else if (ordered && model.outcome !== null) {
      this.fail(`${where}: outcome ${model.outcome} became null`);
    }
    const names = (view.participants as any[]).map((p) => `${p.name} ${p.url}`);
    const expected = model.participants.map((p) => `${p.name} ${p.url}`);
    if (ordered && JSON.stringify(names) !== JSON.stringify(expected)) {
      this.fail(`${where}: participants ${JSON.stringify(names)}, expected ${JSON.stringify(expected)}`);
    }
    for (const p of view.participants as any[]) {
      const answered = this.pool.answers.get(`${model.id}/${p.name}`);
      if (p.vote === 'yes' && answered !== 'yes')
        this.fail(`${where}: ${p.name} recorded as yes but answered ${answered}`);
      if (p.vote === 'read-only' && answered !== 'read-only') {
        this.fail(`${where}: ${p.name} recorded as read-only but answered ${answered}`);
      }
      if (p.heuristic !== undefined) this.fail(`${where}: ${p.name} reported a heuristic ${p.heuristic}`);
      if (outcome === 'commit') {
        if (p.vote !== 'yes' && p.vote !== 'read-only') this.fail(`${where}: commit with ${p.name} voting ${p.vote}`);
        if (answered !== 'yes' && answered !== 'read-only')
          this.fail(`${where}: commit, yet ${p.name} answered ${answered}`);
      }
      if (FINAL_STATES.has(state) && !p.acknowledged) this.fail(`${where}: ${state} but ${p.name} not acknowledged`);
    }
  }

  /** The answer of a call that may run phase one and two: prepare, commit, or a one-shot begin. */
  private checkAnswer(model: TxModel, call: Call, res: LightMyRequestResponse, ordered: boolean): void {
    const what = `${call} of ${model.id}`;
    const body = res.json();
    switch (call) {
      case 'prepare':
        this.expectStatus(res, [200, 409], what);
        break;
      case 'commit':
        this.expectStatus(res, [200, 202, 409], what);
        break;
      case 'abort':
        this.expectStatus(res, [200, 409], what);
        break;
      case 'get':
        this.expectStatus(res, [200], what);
        break;
      case 'outcome': {
        this.expectStatus(res, [200], what);
        const outcome = body.outcome;
        if (outcome === 'commit' || outcome === 'abort') {
          if (model.outcome !== null && model.outcome !== outcome)
            this.fail(`${what}: ${outcome}, but ${model.outcome} was seen`);
          model.outcome = outcome;
        } else if (outcome !== 'pending') {
          this.fail(`${what}: outcome ${JSON.stringify(outcome)}`);
        } else if (ordered && model.outcome !== null) {
          this.fail(`${what}: pending, but ${model.outcome} was seen`);
        }
        return;
      }
    }
    const view = res.statusCode === 409 ? body.transaction : body;
    if (!isObject(view)) this.fail(`${what}: ${res.statusCode} without a transaction: ${describe(res)}`);
    this.observe(model, view, ordered);
    if (res.statusCode === 409) {
      const expected = call === 'abort' ? 'commit' : 'abort';
      if (view.outcome !== expected) this.fail(`${what}: 409 carrying a transaction with outcome ${view.outcome}`);
      return;
    }
    if (call === 'prepare' && !['prepared', 'committing', 'committed'].includes(view.state)) {
      this.fail(`${what}: 200 in state ${view.state}`);
    }
    if (call === 'commit' && res.statusCode === 200 && view.state !== 'committed')
      this.fail(`${what}: 200 in state ${view.state}`);
    if (call === 'commit' && res.statusCode === 202 && view.outcome !== 'commit') {
      this.fail(`${what}: 202 with outcome ${view.outcome}`);
    }
    if (call === 'abort' && view.outcome !== 'abort') this.fail(`${what}: 200 with outcome ${view.outcome}`);
  }

  private async doCall(model: TxModel, call: Call, ordered: boolean): Promise<void> {
    const base = `/v1/transactions/${model.id}`;
    const res =
      call === 'get' || call === 'outcome'
        ? await this.inject('GET', call === 'get' ? base : `${base}/outcome`)
        : await this.inject('POST', `${base}/${call}`);
    this.checkAnswer(model, call, res, ordered);
  }

  private async begin(cmd: Extract<Command, { kind: 'begin' }>): Promise<void> {
    const participants = cmd.participants.map(({ server, script }) => ({
      name: this.pool.newName(script),
      server,
      url: this.pool.server(server).url,
    }));
    const key = cmd.keyed || cmd.copies > 1 ? `seq-${this.runId}-${this.keys++}` : null;
    const body: Record<string, unknown> = {
      participants: participants.map((p) => ({ name: p.name, url: p.url, payload: { server: p.server } })),
      ...(cmd.timeoutMs === null ? {} : { timeoutMs: cmd.timeoutMs }),
      ...(key === null ? {} : { idempotencyKey: key }),
      ...(cmd.oneShot ? { commit: true } : {}),
    };
    const answers = await Promise.all(
      Array.from({ length: cmd.copies }, () => this.inject('POST', '/v1/transactions', body)),
    );
    const views = answers.map((res) => {
      const answer = res.json();
      const view = res.statusCode === 409 ? answer.transaction : answer;
      if (!isObject(view) || typeof view.id !== 'string') this.fail(`begin: no transaction in ${describe(res)}`);
      if (res.headers.location !== `/v1/transactions/${view.id}`) this.fail(`begin: location ${res.headers.location}`);
      return view;
    });
    const ids = new Set(views.map((v) => v.id));
    if (ids.size !== 1) this.fail(`one idempotency key, ${ids.size} transactions: ${[...ids].join(', ')}`);
    const model: TxModel = { id: [...ids][0] as string, oneShot: cmd.oneShot, key, body, participants, outcome: null };
    this.txs.push(model);
    const ordered = cmd.copies === 1;
    if (cmd.oneShot) {
      for (const res of answers) this.checkAnswer(model, 'commit', res, ordered);
    } else {
      const statuses = answers.map((res) => res.statusCode).sort();
      const expected = [...Array(cmd.copies - 1).fill(200), 201];
      if (JSON.stringify(statuses) !== JSON.stringify(expected))
        this.fail(`begin ×${cmd.copies}: statuses ${statuses}`);
      for (const view of views) {
        this.observe(model, view, ordered);
        if (view.state !== 'active') this.fail(`begin: state ${view.state}`);
      }
    }
    if (!ordered) await this.doCall(model, 'get', true);
  }

  private async again(model: TxModel, same: boolean): Promise<void> {
    if (model.key === null) return;
    const body = same ? model.body : { ...model.body, metadata: { again: true } };
    const res = await this.inject('POST', '/v1/transactions', body);
    if (!same) {
      this.expectStatus(res, [409], 'a reused idempotency key');
      if (res.json().type !== 'urn:commitd:problem:idempotency-key-reused') this.fail(`reused key: ${describe(res)}`);
      return;
    }
    const answer = res.json();
    const view = res.statusCode === 409 ? answer.transaction : answer;
    if (!isObject(view) || view.id !== model.id) this.fail(`begin again: not the same transaction: ${describe(res)}`);
    if (model.oneShot) this.checkAnswer(model, 'commit', res, true);
    else {
      this.expectStatus(res, [200], 'begin again');
      this.observe(model, view, true);
    }
  }

  /** An enlistment racing other calls: whichever comes first decides whether it is taken. */
  private async raceEnlist(model: TxModel, script: Script): Promise<void> {
    const taken = new Set(model.participants.map((p) => p.server));
    const server = [...Array(POOL).keys()].find((i) => !taken.has(i));
    if (server === undefined) return;
    const p: ParticipantModel = { name: this.pool.newName(script), server, url: this.pool.server(server).url };
    const res = await this.inject('POST', `/v1/transactions/${model.id}/participants`, { name: p.name, url: p.url });
    this.expectStatus(res, [201, 409], 'enlist (racing)');
    if (res.statusCode === 201) model.participants.push(p);
    const view = res.statusCode === 201 ? res.json() : res.json().transaction;
    if (view !== undefined) this.observe(model, view, false);
  }

  private async enlist(model: TxModel, cmd: Extract<Command, { kind: 'enlist' }>): Promise<void> {
    const url = `/v1/transactions/${model.id}/participants`;
    const taken = new Set(model.participants.map((p) => p.server));
    if (cmd.mode === 'new') {
      const free = [...Array(POOL).keys()].filter((i) => !taken.has(i));
      const server = free.includes(cmd.server) ? cmd.server : free[0];
      if (server === undefined) return;
      const p: ParticipantModel = { name: this.pool.newName(cmd.script), server, url: this.pool.server(server).url };
      const res = await this.inject('POST', url, { name: p.name, url: p.url });
      this.expectStatus(res, model.oneShot || model.outcome !== null ? [409] : [201, 409], 'enlist');
      if (res.statusCode === 201) {
        model.participants.push(p);
        this.observe(model, res.json(), true);
      } else if (res.json().transaction !== undefined) {
        this.observe(model, res.json().transaction, true);
      }
      return;
    }
    const existing = model.participants[cmd.server % Math.max(1, model.participants.length)];
    if (existing === undefined) return;
    const otherUrl = `${existing.url}/elsewhere`;
    const res = await this.inject('POST', url, {
      name: existing.name,
      url: cmd.mode === 'repeat' ? existing.url : otherUrl,
    });
    const allowed = cmd.mode === 'conflict' || model.oneShot || model.outcome !== null ? [409] : [200, 409];
    this.expectStatus(res, allowed, `enlist (${cmd.mode})`);
    const view = res.statusCode === 200 ? res.json() : res.json().transaction;
    if (view !== undefined) this.observe(model, view, true);
  }

  async run(cmd: Command): Promise<void> {
    this.trace.push(`# ${JSON.stringify(cmd)}`);
    switch (cmd.kind) {
      case 'begin':
        return this.begin(cmd);
      case 'sleep':
        await sleep(cmd.ms);
        return;
    }
    const model = this.tx(cmd.tx);
    if (model === undefined) return;
    switch (cmd.kind) {
      case 'again':
        return this.again(model, cmd.same);
      case 'enlist':
        return this.enlist(model, cmd);
      case 'call':
        return this.doCall(model, cmd.call, true);
      case 'race':
        await Promise.all(
          cmd.calls.map((call, i) =>
            call !== 'enlist'
              ? this.doCall(model, call, false)
              : cmd.calls.indexOf('enlist') === i
                ? this.raceEnlist(model, cmd.script)
                : this.doCall(model, 'get', false),
          ),
        );
        // Whatever order they ran in, a read afterwards sees the newest state.
        return this.doCall(model, 'get', true);
    }
  }

  /** Abort what is undecided, wait until everything finished, then check every participant's local state. */
  async settle(): Promise<void> {
    this.trace.push('# settle');
    for (const model of this.txs) {
      const view = (await this.inject('GET', `/v1/transactions/${model.id}`)).json();
      this.observe(model, view, true);
      if (view.outcome === null) {
        const res = await this.inject('POST', `/v1/transactions/${model.id}/abort`);
        this.checkAnswer(model, 'abort', res, true);
        this.expectStatus(res, [200], 'abort of an undecided transaction');
      }
    }
    const deadline = Date.now() + 10_000;
    for (const model of this.txs) {
      for (;;) {
        const view = await this.h.coordinator.reads.get(model.id);
        if (FINAL_STATES.has(view.state)) break;
        if (Date.now() > deadline) this.fail(`${model.id} did not finish: still ${view.state}`);
        await sleep(5);
      }
      const res = await this.inject('GET', `/v1/transactions/${model.id}`);
      const view = res.json();
      this.observe(model, view, true);
      const inquiry = (await this.inject('GET', `/v1/transactions/${model.id}/outcome`)).json();
      if (inquiry.outcome !== view.outcome)
        this.fail(`${model.id}: inquiry says ${inquiry.outcome}, the transaction ${view.outcome}`);
      this.checkParticipants(model, view);
    }
    if (this.h.errors.length > 0) this.fail(`internal errors: ${this.h.errors.map(String).join('; ')}`);
  }

  private checkParticipants(model: TxModel, view: any): void {
    const where = `transaction ${model.id} (${view.outcome})`;
    const local = new Map<string, string | undefined>();
    for (const p of model.participants) {
      const server = this.pool.server(p.server);
      const state = server.states.get(model.id);
      local.set(p.name, state);
      if (state === 'prepared') this.fail(`${where}: ${p.name} is left prepared`);
      const answered = this.pool.answers.get(`${model.id}/${p.name}`);
      const messages = server.received.filter((m) => m.txId === model.id);
      for (const m of messages) {
        if (m.body.participant !== p.name)
          this.fail(`${where}: ${p.name}'s server got a message for ${m.body.participant}`);
      }
      const commits = messages.filter((m) => m.action === 'commit').length;
      const aborts = messages.filter((m) => m.action === 'abort').length;
      if (commits > 0 && (view.outcome !== 'commit' || answered !== 'yes')) {
        this.fail(`${where}: ${p.name} answered ${answered} and got ${commits} commit message(s)`);
      }
      if (aborts > 0 && view.outcome !== 'abort') this.fail(`${where}: ${p.name} got an abort message`);
      const vote = (view.participants as any[]).find((q) => q.name === p.name)?.vote;
      if (vote === 'read-only' && commits + aborts > 0) this.fail(`${where}: read-only ${p.name} heard phase two`);
      if (view.outcome === 'commit' && answered === 'yes' && state !== 'committed') {
        this.fail(`${where}: yes voter ${p.name} is ${state}`);
      }
      if (view.outcome === 'abort' && state === 'committed') this.fail(`${where}: ${p.name} committed`);
    }
    const states = [...local.values()];
    if (states.includes('committed') && states.includes('aborted')) {
      this.fail(`${where}: committed at one participant, aborted at another: ${JSON.stringify([...local])}`);
    }
    const mine = new Set(model.participants.map((p) => p.server));
    this.pool.servers.forEach((server, i) => {
      if (!mine.has(i) && server.received.some((m) => m.txId === model.id)) {
        this.fail(`${where}: server ${i} is not a participant, yet heard of it`);
      }
    });
  }
}

function summary(res: LightMyRequestResponse): string {
  try {
    const body = res.json();
    const tx = isObject(body.transaction) ? body.transaction : body;
    if (typeof body.outcome === 'string' && tx === body && body.state === undefined) return `outcome ${body.outcome}`;
    const votes = Array.isArray(tx.participants)
      ? tx.participants.map((p: any) => `${p.name}:${p.vote}${p.acknowledged ? '+' : ''}`).join(',')
      : '';
    return `${tx.state ?? body.type} ${tx.outcome ?? ''} [${votes}]`;
  } catch {
    return res.body.slice(0, 100);
  }
}

t.test('sequences of client calls keep every outcome atomic and final', async (tt) => {
  const h = await startHarness({
    participants: { prepareTimeoutMs: 150, phaseTwoTimeoutMs: 150, retryDelayMsMin: 5, retryDelayMsMax: 20 },
    transactions: { retentionMs: 86_400_000 },
  });
  const pool = new Pool();
  await pool.start();
  tt.teardown(async () => {
    await h.close(true);
    await pool.close();
  });
  let runs = 0;
  await check(
    tt,
    'sequences of client calls',
    fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 12 }), async (commands) => {
      const run = new SequenceRun(h, pool, runs++);
      for (const cmd of commands) await run.run(cmd);
      await run.settle();
    }),
    SEQUENCES,
  );
});
