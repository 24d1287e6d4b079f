// Two commitd instances with tokens on one private PostgreSQL, probed as an
// attacker on the network would: forwarding must go to the owner's
// advertised URL and nowhere else, and a client token must not reach another
// client's transaction through the instance that does not own it.

import net from 'node:net';
import t, { type Test } from 'tap';
import { tempDir } from '../support/harness.js';
import { startParticipant, waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);

const CLIENT = 'client-token-0123456789abcdef';
const OTHER_CLIENT = 'client-token-other-0123456789';
const PARTICIPANT = 'participant-token-0123456789ab';
const ADMIN = 'admin-token-0123456789abcdefgh';
const TOKENS = `client:${CLIENT},client:${OTHER_CLIENT},participant:${PARTICIPANT},admin:${ADMIN}`;

let schemas = 0;

async function twoInstances(t: Test): Promise<[Service, Service]> {
  const schema = `exposed_${process.pid}_${++schemas}`;
  const started: Service[] = [];
  for (let i = 0; i < 2; i++) {
    const service = await startService(tempDir('commitd-exposed-'), {
      COMMITD_LEASE_MS: '3000',
      COMMITD_PEER_PROBE_INTERVAL_MS: '100',
      COMMITD_PEER_SILENCE_MS: '1000',
      COMMITD_STORE_URL: cluster().url(),
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(await freePort()),
      COMMITD_TOKENS: TOKENS,
    });
    t.teardown(() => service.kill('SIGKILL'));
    started.push(service);
  }
  const [a, b] = started as [Service, Service];
  await waitUntil(
    async () => {
      const shards = await Promise.all(
        [a, b].map(async (s) => {
          const res = await fetch(`${s.url}/v1/cluster`, { headers: { authorization: `Bearer ${ADMIN}` } });
          const body = (await res.json()) as { instances: { self: boolean; shards: number }[] };
          return body.instances.find((x) => x.self)?.shards ?? 0;
        }),
      );
      return shards[0] === 16 && shards[1] === 16;
    },
    15_000,
    'the shards shared evenly',
  );
  return [a, b];
}

async function call(
  base: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; text: string; body: any; type: string | null }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null, type: res.headers.get('content-type') };
}

/** A TCP listener that records whatever arrives and answers like a web server would. */
async function listener(t: Test): Promise<{ port: number; received: () => string }> {
  let received = '';
  const server = net.createServer((socket) => {
    socket.on('data', (chunk) => {
      received += chunk.toString('latin1');
      socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"secret":"here"}');
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port: (server.address() as net.AddressInfo).port, received: () => received };
}

/** Sends one raw request line and headers; resolves with the whole answer as text. */
function rawRequest(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer within 15 s: ${answer}`)), 15_000);
    socket.on('connect', () => socket.write(head));
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
    });
    socket.on('end', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

t.test('an absolute-form request line never sends the forwarded call anywhere but the owner', async (t) => {
  const [a, b] = await twoInstances(t);
  const begun = await call(a.url, CLIENT, 'POST', '/v1/transactions', { participants: [] });
  t.equal(begun.status, 201);
  const id = begun.body.id as string;
  const bPort = Number(new URL(b.url).port);
  const target = await listener(t);

  // To the instance that does not own the transaction, naming another host.
  const answer = await rawRequest(
    bPort,
    `GET http://127.0.0.1:${target.port}/v1/transactions/${id}?x HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${bPort}\r\nAuthorization: Bearer ${PARTICIPANT}\r\nConnection: close\r\n\r\n`,
  );
  t.equal(target.received(), '', 'nothing reached the host the request line named');
  t.notMatch(answer, /"secret"/, "the other host's answer is not passed back");
  t.match(answer, /^HTTP\/1\.1 4\d\d /, 'refused with a 4xx');
  t.match(answer, /application\/problem\+json/);

  // The same request line naming this instance itself is served (forwarded to the owner).
  const own = await rawRequest(
    bPort,
    `GET http://127.0.0.1:${bPort}/v1/transactions/${id}?x HTTP/1.1\r\n` +
      `Host: 127.0.0.1:${bPort}\r\nAuthorization: Bearer ${PARTICIPANT}\r\nConnection: close\r\n\r\n`,
  );
  t.match(own, /^HTTP\/1\.1 200 /, own.slice(0, 300));
  t.match(own, new RegExp(`"id":"${id}"`));
  t.equal(target.received(), '');
});
t.test('a client token reaches only its own transactions, through either instance', async (t) => {
  const [a, b] = await twoInstances(t);
  const p = await startParticipant();
  t.teardown(() => p.close());
  const mine = await call(a.url, CLIENT, 'POST', '/v1/transactions', { participants: [] });
  t.equal(mine.status, 201);
  const id = mine.body.id as string;
  const theirs = await call(a.url, OTHER_CLIENT, 'POST', '/v1/transactions', { participants: [] });
  const otherId = theirs.body.id as string;
  // An id of the same shape that nobody began (its last character changed).
  const unknownId = `${otherId.slice(0, -1)}${otherId.endsWith('0') ? '1' : '0'}`;

  for (const [via, base] of [
    ['the owner', a.url],
    ['the other instance', b.url],
  ] as const) {
    for (const [method, path, body] of [
      ['GET', '', undefined],
      ['POST', '/participants', { name: 'intruder', url: p.url }],
      ['POST', '/prepare', undefined],
      ['POST', '/commit', undefined],
      ['POST', '/abort', undefined],
    ] as const) {
      const foreign = await call(base, CLIENT, method, `/v1/transactions/${otherId}${path}`, body);
      const unknown = await call(base, CLIENT, method, `/v1/transactions/${unknownId}${path}`, body);
      t.equal(foreign.status, 404, `${method} ${path || '/'} of another client's, via ${via}: ${foreign.text}`);
      t.equal(foreign.type, unknown.type);
      t.equal(
        foreign.text.replaceAll(otherId, '<id>'),
        unknown.text.replaceAll(unknownId, '<id>'),
        `${method} ${path || '/'} via ${via}: answered as an unknown id is`,
      );
    }
    t.equal((await call(base, CLIENT, 'GET', `/v1/transactions/${id}`)).status, 200, `own, via ${via}`);
    t.equal((await call(base, ADMIN, 'GET', `/v1/transactions/${otherId}`)).status, 200, `admin, via ${via}`);
  }
  const stillActive = await call(a.url, OTHER_CLIENT, 'GET', `/v1/transactions/${otherId}`);
  t.equal(stillActive.body.state, 'active', 'nothing the other token sent changed it');
  t.same(stillActive.body.participants, []);
  t.equal(p.received.length, 0);
  const committed = await call(b.url, OTHER_CLIENT, 'POST', `/v1/transactions/${otherId}/commit`);
  t.equal(committed.status, 200, 'its beginner commits it through the other instance');
});
