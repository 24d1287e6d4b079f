// Transactions belong to their caller (issue 23): a client token reaches
// only the transactions it began, after a restart too; another's answers 404
// exactly as an unknown id does. Admin reaches all; participant tokens as
// before, unless bound to names (participant@payments:…), which enlist,
// read and inquire only as those names (403 otherwise). Without tokens
// nothing changes.

import type { LightMyRequestResponse } from 'fastify';
import t, { type Test } from 'tap';
import { parseTokens, TokenFormatError } from '../../src/security/tokens.js';
import { type Harness, type Overrides, startHarness, tempDir } from '../support/harness.js';

const CLIENT_A = 'client-a-secret-0123456789';
const CLIENT_B = 'client-b-secret-0123456789';
const PARTICIPANT = 'participant-secret-0123456789';
const BOUND = 'bound-participant-secret-0123';
const ADMIN = 'admin-secret-0123456789abc';
const TOKENS = [
  `client:${CLIENT_A}`,
  `client:${CLIENT_B}`,
  `participant:${PARTICIPANT}`,
  `participant@payments@stock%3Aeu:${BOUND}`,
  `admin:${ADMIN}`,
];

async function harness(t: Test, dataDir = tempDir(), overrides: Overrides = {}): Promise<Harness> {
  const h = await startHarness({ ...overrides, server: { tokens: TOKENS, ...overrides.server } }, dataDir);
  let closed = false;
  const close = h.close;
  h.close = async (removeData) => {
    if (closed) return;
    closed = true;
    await close(removeData);
  };
  t.teardown(() => h.close());
  return h;
}

function call(h: Harness, token: string | null, method: 'GET' | 'POST', url: string, payload?: object) {
  return h.app.inject({
    method,
    url,
    ...(payload === undefined ? {} : { payload }),
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

const ACTIONS: Array<['GET' | 'POST', string, object | undefined]> = [
  ['GET', '', undefined],
  ['POST', '/participants', { name: 'intruder', url: 'http://127.0.0.1:9/tx' }],
  ['POST', '/prepare', undefined],
  ['POST', '/commit', undefined],
  ['POST', '/abort', undefined],
];

/** Status, headers that could tell them apart, and body, with the id written as <id>. */
function shape(res: LightMyRequestResponse, id: string) {
  return {
    status: res.statusCode,
    type: res.headers['content-type'],
    length: res.headers['content-length'],
    body: res.body.replaceAll(id, '<id>'),
  };
}

/** An id of the same shape that nobody began: its last character changed. */
const unknownLike = (id: string) => `${id.slice(0, -1)}${id.endsWith('0') ? '1' : '0'}`;

async function expectUnreachable(t: Test, h: Harness, token: string, id: string, what: string) {
  for (const [method, suffix, body] of ACTIONS) {
    const foreign = await call(h, token, method, `/v1/transactions/${id}${suffix}`, body);
    const unknownId = unknownLike(id);
    const unknown = await call(h, token, method, `/v1/transactions/${unknownId}${suffix}`, body);
    t.equal(foreign.statusCode, 404, `${what}: ${method} ${suffix || '/'}: ${foreign.body}`);
    t.same(shape(foreign, id), shape(unknown, unknownId), `${what}: ${method} ${suffix || '/'} reads as unknown`);
  }
}

t.test('a client token reaches only what it began; admin all; after a restart too', async (t) => {
  const dataDir = tempDir();
  let h = await harness(t, dataDir);
  const begun = await call(h, CLIENT_A, 'POST', '/v1/transactions', { participants: [] });
  t.equal(begun.statusCode, 201);
  const id = begun.json().id as string;

  await expectUnreachable(t, h, CLIENT_B, id, 'another client');
  t.equal((await call(h, CLIENT_A, 'GET', `/v1/transactions/${id}`)).statusCode, 200, 'its beginner reads it');
  t.equal((await call(h, ADMIN, 'GET', `/v1/transactions/${id}`)).statusCode, 200, 'admin reads it');
  t.equal(
    (await call(h, PARTICIPANT, 'GET', `/v1/transactions/${id}`)).statusCode,
    200,
    'an unbound participant token',
  );
  const read = (await call(h, CLIENT_A, 'GET', `/v1/transactions/${id}`)).json();
  t.equal(read.state, 'active', 'nothing another client sent changed it');
  t.same(read.participants, []);

  await h.close();
  h = await harness(t, dataDir);
  await expectUnreachable(t, h, CLIENT_B, id, 'another client, after a restart');
  const committed = await call(h, CLIENT_A, 'POST', `/v1/transactions/${id}/commit`);
  t.equal(committed.statusCode, 200, 'its beginner commits it after the restart');
  await expectUnreachable(t, h, CLIENT_B, id, 'another client, once finished');
});

t.test("a finished one-shot, and an admin-begun transaction, are out of a client token's reach", async (t) => {
  const h = await harness(t);
  const oneShot = await call(h, CLIENT_A, 'POST', '/v1/transactions', { participants: [], commit: true });
  t.equal(oneShot.statusCode, 200);
  await expectUnreachable(t, h, CLIENT_B, oneShot.json().id, 'a finished one-shot');
  const byAdmin = await call(h, ADMIN, 'POST', '/v1/transactions', { participants: [] });
  await expectUnreachable(t, h, CLIENT_A, byAdmin.json().id, "an admin's");
  t.equal((await call(h, ADMIN, 'POST', `/v1/transactions/${byAdmin.json().id}/abort`)).statusCode, 200);
});

t.test('a bound participant token enlists, reads and inquires only as its names', async (t) => {
  const h = await harness(t);
  const begin = () => call(h, CLIENT_A, 'POST', '/v1/transactions', { participants: [] });
  const id = (await begin()).json().id as string;
  const elsewhere = (await begin()).json().id as string;
  const enlist = (token: string, txId: string, name: string) =>
    call(h, token, 'POST', `/v1/transactions/${txId}/participants`, { name, url: 'http://127.0.0.1:9/tx' });

  const taken = await enlist(BOUND, id, 'orders');
  t.equal(taken.statusCode, 403, `another name: ${taken.body}`);
  t.match(taken.headers['content-type'], /^application\/problem\+json/);
  t.equal((await enlist(BOUND, id, 'payments')).statusCode, 201, 'its own name');
  t.equal((await enlist(BOUND, id, 'stock:eu')).statusCode, 201, 'its other name (%3A is a colon)');
  t.equal((await enlist(PARTICIPANT, elsewhere, 'orders')).statusCode, 201, 'an unbound token enlists any name');

  t.equal((await call(h, BOUND, 'GET', `/v1/transactions/${id}`)).statusCode, 200, 'reads where it takes part');
  const foreignRead = await call(h, BOUND, 'GET', `/v1/transactions/${elsewhere}`);
  t.equal(foreignRead.statusCode, 403, `reads elsewhere: ${foreignRead.body}`);
  t.equal((await call(h, BOUND, 'GET', `/v1/transactions/${id}/outcome`)).json().outcome, 'pending');
  t.equal((await call(h, BOUND, 'GET', `/v1/transactions/${elsewhere}/outcome`)).statusCode, 403, 'inquires elsewhere');
  const unknown = await call(h, BOUND, 'GET', `/v1/transactions/${unknownLike(id)}/outcome`);
  t.same([unknown.statusCode, unknown.json().outcome], [200, 'abort'], 'an unknown id is presumed aborted, for anyone');
  t.equal((await call(h, PARTICIPANT, 'GET', `/v1/transactions/${elsewhere}/outcome`)).statusCode, 200, 'unbound');
  const after = (await call(h, ADMIN, 'GET', `/v1/transactions/${id}`)).json();
  t.same(
    after.participants.map((p: { name: string }) => p.name),
    ['payments', 'stock:eu'],
  );
});

t.test('without tokens, every caller reaches every transaction as before', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const id = (await call(h, null, 'POST', '/v1/transactions', { participants: [] })).json().id;
  t.equal((await call(h, null, 'GET', `/v1/transactions/${id}`)).statusCode, 200);
  t.equal((await call(h, null, 'POST', `/v1/transactions/${id}/commit`)).statusCode, 200);
});

t.test('bound token entries: the syntax, and what is refused', async (t) => {
  const [bound] = parseTokens([`participant@payments@stock%3Aeu:${BOUND}`], null);
  t.same(bound?.names, ['payments', 'stock:eu']);
  t.equal(parseTokens([`participant:${BOUND}`], null)[0]?.names, null, 'unbound');
  t.same(parseTokens([`participant@a:sha256:${'0'.repeat(64)}`], null)[0]?.names, ['a'], 'with a digest');
  for (const [entry, why] of [
    [`client@payments:${BOUND}`, /only a participant token/],
    [`participant@:${BOUND}`, /not a participant name/],
    [`participant@-x:${BOUND}`, /not a participant name/],
    [`participant@a%zz:${BOUND}`, /not a participant name/],
    [`participant@a:short`, /at least 16/],
  ] as const) {
    t.throws(() => parseTokens([entry], null), { name: TokenFormatError.name, message: why }, entry);
    try {
      parseTokens([entry], null);
    } catch (error) {
      t.notMatch((error as Error).message, BOUND, 'the secret is not in the message');
    }
  }
});
