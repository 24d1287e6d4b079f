// The HTTP participant client against real sockets: every kind of answer a
// participant can give (or fail to give) maps to the answer the protocol
// expects, and none makes the client throw or buffer without bound.

import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { HttpParticipants, type HttpParticipantsOptions } from '../../src/participants/http-participants.js';
import { signature } from '../../src/participants/signing.js';

interface Seen {
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

type Respond = (req: Seen, res: http.ServerResponse) => void;

/** A participant whose every answer is `respond`'s; returns its base url and what it was sent. */
async function participant(t: Test, respond: Respond): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(s);
      respond(s, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/tx/`, seen };
}

function client(t: Test, options: Partial<HttpParticipantsOptions> = {}): HttpParticipants {
  const c = new HttpParticipants({
    prepareTimeoutMs: 2_000,
    phaseTwoTimeoutMs: 2_000,
    connectionsPerOrigin: 4,
    callsInFlightMax: 16,
    keepAliveTimeoutMs: 1_000,
    answerBytesMax: 1_024,
    callsPerOriginMax: 16,
    signingSecret: null,
    ...options,
  });
  t.teardown(() => c.close());
  return c;
}

const json =
  (status: number, body: unknown): Respond =>
  (_req, res) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

t.test('prepare: each vote, with its reason, and the request it was sent', async (t) => {
  const yes = await participant(t, json(200, { vote: 'yes' }));
  const no = await participant(t, json(200, { vote: 'no', reason: 'out of stock' }));
  const readOnly = await participant(t, json(200, { vote: 'read-only' }));
  const c = client(t);
  t.same(await c.prepare('tx_1', { name: 'orders', url: yes.url, database: null }, '{"sku":42}'), {
    kind: 'vote',
    vote: 'yes',
    reason: null,
  });
  t.same(await c.prepare('tx_1', { name: 'stock', url: no.url, database: null }, null), {
    kind: 'vote',
    vote: 'no',
    reason: 'out of stock',
  });
  t.same(await c.prepare('tx_1', { name: 'audit', url: readOnly.url, database: null }, null), {
    kind: 'vote',
    vote: 'read-only',
    reason: null,
  });
  const sent = yes.seen[0];
  t.equal(sent?.path, '/tx/prepare', 'the trailing slash of the url is not doubled');
  t.same(JSON.parse(sent?.body ?? ''), { transactionId: 'tx_1', participant: 'orders', payload: { sku: 42 } });
  t.equal(sent?.headers['content-type'], 'application/json');
  t.equal(sent?.headers['x-commitd-transaction'], 'tx_1');
  t.equal(sent?.headers['x-commitd-signature'], undefined, 'unsigned without a secret');
});

t.test('prepare: anything but a valid vote is a lost vote, never an exception', async (t) => {
  const cases: Array<[string, Respond, RegExp]> = [
    ['HTTP 500', json(500, { vote: 'yes' }), /^bad answer: prepare answered HTTP 500$/],
    ['HTTP 201', json(201, { vote: 'yes' }), /^bad answer: prepare answered HTTP 201$/],
    ['not JSON', (_q, res) => res.end('yes please'), /without a valid vote/],
    ['an unknown vote', json(200, { vote: 'maybe' }), /without a valid vote/],
    ['an array', json(200, ['yes']), /without a valid vote/],
    ['an empty body', (_q, res) => res.end(), /without a valid vote/],
    ['a body over the limit', (_q, res) => res.end(`{"vote":"yes","pad":"${'x'.repeat(4_096)}"}`), /valid vote/],
    [
      'a chunked body over the limit',
      (_q, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        for (let i = 0; i < 8; i++) res.write('x'.repeat(512));
        res.end();
      },
      /valid vote/,
    ],
    ['a dropped connection', (_q, res) => res.socket?.destroy(), /./],
  ];
  for (const [what, respond, reason] of cases) {
    const p = await participant(t, respond);
    const answer = await client(t).prepare('tx_1', { name: 'p', url: p.url, database: null }, null);
    t.equal(answer.kind, 'lost', what);
    t.match(answer.kind === 'lost' ? answer.reason : '', reason, what);
  }
});

t.test('prepare: a participant that never answers is a lost vote after the timeout', async (t) => {
  const silent = await participant(t, () => {});
  const started = performance.now();
  const answer = await client(t, { prepareTimeoutMs: 200 }).prepare(
    'tx_1',
    { name: 'p', url: silent.url, database: null },
    null,
  );
  t.same(answer, { kind: 'lost', reason: 'no answer within the timeout' });
  t.ok(performance.now() - started >= 150, 'not before the timeout');
});

t.test('prepare: an answer trickled byte by byte is cut off at the timeout, not renewed by each byte', async (t) => {
  const answer = Buffer.from(JSON.stringify({ vote: 'yes' }));
  const trickle = await participant(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(answer.length) });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed || i >= answer.length) return clearInterval(timer);
      res.write(answer.subarray(i, i + 1));
      i++;
      if (i === answer.length) res.end();
    }, 60);
    res.on('close', () => clearInterval(timer));
  });
  // Each byte arrives well within the 300 ms, the whole answer takes ~1 s.
  const got = await client(t, { prepareTimeoutMs: 300 }).prepare(
    'tx_1',
    { name: 'p', url: trickle.url, database: null },
    null,
  );
  t.same(got, { kind: 'lost', reason: 'no answer within the timeout' }, 'the yes that came too late is not counted');
});

t.test('prepare: time spent waiting for a connection or a call slot counts against the timeout', async (t) => {
  // Answers after 200 ms; the timeout is 300 ms. Queued behind one such call,
  // a second call would be answered 400 ms after it was asked for.
  const slow = await participant(t, (_req, res) => {
    setTimeout(() => json(200, { vote: 'yes' })(_req, res), 200);
  });
  const target = { name: 'p', url: slow.url, database: null };
  for (const [what, options] of [
    ['one connection per origin', { connectionsPerOrigin: 1 }],
    ['one call slot', { callsInFlightMax: 1 }],
  ] as const) {
    const c = client(t, { prepareTimeoutMs: 300, ...options });
    const [first, second] = await Promise.all([c.prepare('tx_1', target, null), c.prepare('tx_2', target, null)]);
    t.same(first, { kind: 'vote', vote: 'yes', reason: null }, `${what}: the first call is answered in time`);
    t.equal(second.kind, 'lost', `${what}: the queued call's yes, 400 ms after it was asked for, is not counted`);
  }
});

t.test('prepare: nobody listening is a lost vote', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const answer = await client(t).prepare(
    'tx_1',
    { name: 'p', url: `http://127.0.0.1:${port}/tx`, database: null },
    null,
  );
  t.same(answer, {
    kind: 'lost',
    reason: 'no connection (unreachable, refused or closed before answering)',
  });
});

t.test('a closed port and a server that hangs up read the same: no port-scan oracle (issue 23)', async (t) => {
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const hangsUp = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => hangsUp.listen(0, '127.0.0.1', resolve));
  t.teardown(() => hangsUp.close());
  const c = client(t);
  const refused = await c.prepare(
    'tx_1',
    { name: 'p', url: `http://127.0.0.1:${closedPort}/tx`, database: null },
    null,
  );
  const closed = await c.prepare(
    'tx_1',
    { name: 'p', url: `http://127.0.0.1:${(hangsUp.address() as net.AddressInfo).port}/tx`, database: null },
    null,
  );
  t.equal(refused.kind, 'lost');
  t.same(refused, closed, 'the same reason for both');
  t.notMatch(JSON.stringify(refused), /ECONN|socket|closed the connection/i, 'no raw socket error');
  const phaseTwo = await c.deliver('abort', 'tx_1', {
    name: 'p',
    url: `http://127.0.0.1:${closedPort}/tx`,
    database: null,
  });
  t.same(phaseTwo, { kind: 'failed', error: 'no connection (unreachable, refused or closed before answering)' });
});

t.test('exposed: a name resolving to a loopback or private address is refused at connect time', async (t) => {
  const { url } = await participant(t, json(200, { vote: 'yes' }));
  const port = new URL(url).port;
  const exposed = client(t, {
    urlPolicy: { allowed: [], internalRefused: true, reachesCommitd: () => false },
    // A private DNS name: resolves to the participant on loopback.
    resolve: ((_host: string, options: unknown, callback: (...args: unknown[]) => void) => {
      const all = (options as { all?: boolean }).all;
      if (all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as never,
  });
  const answer = await exposed.prepare(
    'tx_1',
    { name: 'p', url: `http://pay.internal:${port}/tx`, database: null },
    null,
  );
  t.same(answer, { kind: 'lost', reason: 'refused by the participant address policy' });
  const literal = await exposed.prepare('tx_1', { name: 'p', url, database: null }, null);
  t.same(literal, { kind: 'lost', reason: 'refused by the participant address policy' }, 'a literal loopback too');
  const open = client(t, {
    resolve: ((_host: string, options: unknown, callback: (...args: unknown[]) => void) => {
      const all = (options as { all?: boolean }).all;
      if (all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as never,
  });
  t.match(
    await open.prepare('tx_1', { name: 'p', url: `http://pay.internal:${port}/tx`, database: null }, null),
    { kind: 'vote', vote: 'yes' },
    'on loopback the same name is called',
  );
});

t.test('phase two: acknowledgements, heuristics and failures', async (t) => {
  const c = client(t);
  const deliver = async (message: 'commit' | 'abort', respond: Respond) => {
    const p = await participant(t, respond);
    const answer = await c.deliver(message, 'tx_1', { name: 'p', url: p.url, database: null });
    return { answer, seen: p.seen };
  };
  const ok = await deliver('commit', json(200, {}));
  t.same(ok.answer, { kind: 'acknowledged' });
  t.equal(ok.seen[0]?.path, '/tx/commit');
  t.same(JSON.parse(ok.seen[0]?.body ?? ''), { transactionId: 'tx_1', participant: 'p' });
  t.same((await deliver('commit', (_q, res) => res.writeHead(204).end())).answer, { kind: 'acknowledged' });
  t.same(
    (await deliver('commit', (_q, res) => res.end('x'.repeat(8_192)))).answer,
    { kind: 'acknowledged' },
    'a 2xx with a body over the limit still acknowledges',
  );
  t.same((await deliver('abort', json(404, {}))).answer, { kind: 'acknowledged' }, 'abort of an unknown id');
  t.same((await deliver('commit', json(404, {}))).answer, {
    kind: 'failed',
    error: 'bad answer: commit answered HTTP 404',
  });
  t.same((await deliver('commit', json(503, {}))).answer, {
    kind: 'failed',
    error: 'bad answer: commit answered HTTP 503',
  });
  t.same((await deliver('commit', json(409, { heuristic: 'abort' }))).answer, {
    kind: 'heuristic',
    heuristic: 'abort',
  });
  t.same((await deliver('abort', json(409, { heuristic: 'commit' }))).answer, {
    kind: 'heuristic',
    heuristic: 'commit',
  });
  t.same(
    (await deliver('commit', json(409, { heuristic: 'commit' }))).answer,
    { kind: 'acknowledged' },
    'a heuristic decision that matches the outcome',
  );
  t.same((await deliver('commit', json(409, { other: 1 }))).answer, {
    kind: 'failed',
    error: 'bad answer: commit answered HTTP 409 without a heuristic outcome',
  });
  t.same((await deliver('commit', (_q, res) => res.writeHead(409).end('not json'))).answer, {
    kind: 'failed',
    error: 'bad answer: commit answered HTTP 409 without a heuristic outcome',
  });
  const silent = await participant(t, () => {});
  const timedOut = await client(t, { phaseTwoTimeoutMs: 200 }).deliver('commit', 'tx_1', {
    name: 'p',
    url: silent.url,
    database: null,
  });
  t.same(timedOut, { kind: 'failed', error: 'no answer within the timeout' });
});

t.test('with a signing secret every call carries an HMAC the participant can recompute', async (t) => {
  const p = await participant(t, json(200, { vote: 'yes' }));
  const c = client(t, { signingSecret: 's3cret' });
  await c.prepare('tx_1', { name: 'p', url: p.url, database: null }, '{"a":1}');
  await c.deliver('commit', 'tx_1', { name: 'p', url: p.url, database: null });
  t.equal(p.seen.length, 2);
  for (const s of p.seen) {
    const timestamp = String(s.headers['x-commitd-timestamp']);
    t.match(timestamp, /^\d{13}$/);
    const parts = { timestamp, method: 'POST', path: s.path, transactionId: 'tx_1', body: s.body };
    t.equal(s.headers['x-commitd-signature'], signature('s3cret', parts));
  }
});

t.test('calls are reported with their result', async (t) => {
  const p = await participant(t, json(200, { vote: 'no' }));
  const calls: Array<{ message: string; result: string }> = [];
  const c = client(t, { onCall: ({ message, result }) => calls.push({ message, result }) });
  await c.prepare('tx_1', { name: 'p', url: p.url, database: null }, null);
  await c.deliver('abort', 'tx_1', { name: 'p', url: p.url, database: null });
  t.same(calls, [
    { message: 'prepare', result: 'no' },
    { message: 'abort', result: 'acknowledged' },
  ]);
});

t.test('unresponsive origins are paced: healthy participants keep their slots (issue 23)', async (t) => {
  // Four participants that never answer, one that answers at once.
  const hanging: string[] = [];
  for (let i = 0; i < 4; i++) hanging.push((await participant(t, () => {})).url);
  const healthy = await participant(t, json(200, {}));
  const c = client(t, { callsInFlightMax: 4, phaseTwoTimeoutMs: 600, prepareTimeoutMs: 600 });
  const target = (url: string) => ({ name: 'p', url, database: null });
  // First contact: each hanging origin times out once (and is marked).
  const first = await Promise.all(hanging.map((url) => c.deliver('commit', 'tx_1', target(url))));
  t.same(
    first.map((a) => a.kind),
    ['failed', 'failed', 'failed', 'failed'],
  );
  // Now a burst of retries to them, and a healthy call behind it.
  const startedAt = performance.now();
  const retries = hanging.flatMap((url) => [1, 2, 3].map(() => c.deliver('commit', 'tx_1', target(url))));
  const healthyAnswer = await c.deliver('commit', 'tx_1', target(healthy.url));
  const healthyMs = performance.now() - startedAt;
  t.same(healthyAnswer, { kind: 'acknowledged' });
  t.ok(healthyMs < 300, `the healthy participant answered in ${Math.round(healthyMs)} ms, not after the timeout`);
  const answers = await Promise.all(retries);
  const paced = answers.filter((a) => a.kind === 'failed' && /^not sent/.test(a.error));
  // A quarter of the 4 slots: one unresponsive origin is called, the 11 other calls are not sent.
  t.equal(paced.length, 11, 'calls to unresponsive origins beyond their share are not sent');
  // An answer clears the mark: the origin is called normally again.
  t.same(await c.deliver('commit', 'tx_1', target(healthy.url)), { kind: 'acknowledged' });
});
