// The signature format (docs/protocol.md, "Signatures"): commitd's signer
// matches the documented test vector (read from the document itself, so the
// two cannot drift apart), binds the action, the transaction and the body,
// and uses the per-origin secret over the default one.

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { verifySignature } from '../../src/kit/signature.js';
import { HttpParticipants } from '../../src/participants/http-participants.js';
import { parseParticipantSecrets, signature, signingString } from '../../src/participants/signing.js';

const doc = fs.readFileSync(path.join(PACKAGE_ROOT, 'docs', 'protocol.md'), 'utf8');

function vectorField(name: string): string {
  const m = new RegExp(`^\\| ${name} \\| \`([^\`]+)\` \\|$`, 'm').exec(doc);
  if (!m?.[1]) throw new Error(`docs/protocol.md has no test-vector row '${name}'`);
  return m[1];
}

t.test('the signer matches the test vector in docs/protocol.md', async (t) => {
  const parts = {
    timestamp: vectorField('timestamp'),
    method: vectorField('method'),
    path: vectorField('path'),
    transactionId: vectorField('transaction id'),
    body: vectorField('body'),
  };
  t.equal(signature(vectorField('secret'), parts), vectorField('`x-commitd-signature`'));
  t.equal(
    signingString(parts),
    `v1\n1767225600000\nPOST\n/tx/prepare\ntx_01JGZ5K3M8Q9R2S4T6V7W8X9YZ\n${parts.body}`,
    'S as documented',
  );
  // The participant kit's verifier accepts the same vector (with its clock at the timestamp).
  const verdict = verifySignature(
    { ...parts, signature: vectorField('`x-commitd-signature`') },
    { secrets: [vectorField('secret')], nowMs: Number(parts.timestamp) },
  );
  t.same(verdict, { ok: true }, "the kit's verifier accepts it");
});

t.test('the signature binds the action, the transaction, the time, the body and the secret', async (t) => {
  const base = { timestamp: '1767225600000', method: 'POST', path: '/tx/abort', transactionId: 'tx_A', body: '{}' };
  const sig = signature('secret-secret-secret', base);
  t.match(sig, /^v1=[0-9a-f]{64}$/);
  const changed: Array<[string, object]> = [
    ['an abort replayed to /commit', { path: '/tx/commit' }],
    ['another transaction', { transactionId: 'tx_B' }],
    ['another time', { timestamp: '1767225600001' }],
    ['another body', { body: '{ }' }],
    ['another method', { method: 'PUT' }],
  ];
  for (const [what, change] of changed) t.not(signature('secret-secret-secret', { ...base, ...change }), sig, what);
  t.not(signature('another-secret-value', base), sig, 'another secret');
});

t.test('per-origin secrets: parsing refuses bad entries without echoing the secret', async (t) => {
  const map = parseParticipantSecrets([
    'https://PAY.internal:443=pay-secret-0123456789',
    'http://127.0.0.1:9000=a=b=c-0123456789abcdef',
  ]);
  t.equal(map.get('https://pay.internal'), 'pay-secret-0123456789', 'origin normalised');
  t.equal(map.get('http://127.0.0.1:9000'), 'a=b=c-0123456789abcdef', 'a secret may hold =');
  const secret = 'TopSecretValue-0123456789';
  for (const [entry, message] of [
    [secret, /origin=secret/],
    [`pay.internal=${secret}`, /not an origin/],
    [`https://pay.internal/2pc=${secret}`, /must be an origin/],
    ['https://pay.internal=short', /at least 16/],
    [`https://a.internal=${secret}`, /listed twice/],
  ] as Array<[string, RegExp]>) {
    const entries = message.source.includes('twice') ? [entry, entry] : [entry];
    t.throws(() => parseParticipantSecrets(entries), { message });
    try {
      parseParticipantSecrets(entries);
    } catch (e) {
      t.notMatch((e as Error).message, /TopSecret|short/, 'never the secret');
    }
  }
});

t.test('each origin gets its own secret, others the default', async (t) => {
  const seen: Array<{ port: number; headers: http.IncomingHttpHeaders; body: string; path: string }> = [];
  const servers: http.Server[] = [];
  const urls: string[] = [];
  for (let i = 0; i < 2; i++) {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        seen.push({ port: (server.address() as AddressInfo).port, headers: req.headers, body, path: req.url ?? '' });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"vote":"yes"}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}/p${i}`);
  }
  t.teardown(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });
  const own = 'origin-zero-secret-0123456789';
  const fallback = 'default-secret-0123456789';
  const c = new HttpParticipants({
    prepareTimeoutMs: 2000,
    phaseTwoTimeoutMs: 2000,
    connectionsPerOrigin: 2,
    callsInFlightMax: 4,
    callsPerOriginMax: 4,
    keepAliveTimeoutMs: 1000,
    answerBytesMax: 1024,
    signingSecret: fallback,
    participantSecrets: parseParticipantSecrets([`${new URL(urls[0] as string).origin}=${own}`]),
  });
  t.teardown(() => c.close());
  for (const [i, url] of urls.entries()) await c.prepare('tx_X', { name: `p${i}`, url, database: null }, null);
  t.equal(seen.length, 2);
  for (const [i, s] of seen.entries()) {
    const parts = {
      timestamp: String(s.headers['x-commitd-timestamp']),
      method: 'POST',
      path: s.path,
      transactionId: 'tx_X',
      body: s.body,
    };
    t.equal(s.path, `/p${i}/prepare`);
    t.equal(s.headers['x-commitd-transaction'], 'tx_X');
    t.equal(s.headers['x-commitd-signature'], signature(i === 0 ? own : fallback, parts), `participant ${i}`);
    t.not(s.headers['x-commitd-signature'], signature(i === 0 ? fallback : own, parts), `not the other secret`);
  }
});
