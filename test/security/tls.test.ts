// TLS (issue 9): commitd serves HTTPS; HTTPS participants are verified
// against the configured CA (an untrusted one is refused, and its prepare
// counts as no vote, never yes); mutual TLS with a client certificate.
// Certificates are made by openssl for this run (test/support/certs.ts).

import https from 'node:https';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { type Certs, makeCerts } from '../support/certs.js';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';

const certs: Certs = makeCerts();
t.teardown(() => certs.remove());

async function httpsParticipant(
  t: Test,
  cert: string,
  key: string,
  requireClientCert = false,
): Promise<{ url: string; received: string[]; clientSubjects: string[] }> {
  const received: string[] = [];
  const clientSubjects: string[] = [];
  const server = https.createServer(
    { cert, key, ...(requireClientCert ? { requestCert: true, rejectUnauthorized: true, ca: certs.caCert } : {}) },
    (req, res) => {
      received.push(req.url ?? '');
      const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      if (peer?.subject) clientSubjects.push(String(peer.subject.CN));
      req.resume();
      req.on('end', () => {
        const body = req.url?.endsWith('/prepare') ? '{"vote":"yes"}' : '{}';
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      });
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/tx`, received, clientSubjects };
}

async function harness(t: Test, overrides: Overrides): Promise<Harness> {
  const h = await startHarness(overrides);
  t.teardown(() => h.close(true));
  return h;
}

const begin = (h: Harness, url: string) =>
  h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: { participants: [{ name: 'p', url }], commit: true },
  });

t.test('commitd serves HTTPS with the configured certificate', async (t) => {
  const h = await startHarness({}, undefined, false, { cert: certs.serverCert, key: certs.serverKey });
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => h.close(true));
  const port = (h.app.server.address() as AddressInfo).port;
  const trusting = new Agent({ connect: { ca: certs.caCert } });
  t.teardown(() => trusting.close());
  const res = await request(`https://127.0.0.1:${port}/v1/transactions`, {
    dispatcher: trusting,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  t.equal(res.statusCode, 201, 'a begin over HTTPS');
  await res.body.dump();
  const plain = await request(`http://127.0.0.1:${port}/healthz`).then(
    (r) => r.statusCode,
    (e: Error) => e.message,
  );
  t.not(plain, 200, 'plain HTTP is not served on the HTTPS port');
  const untrusting = new Agent();
  t.teardown(() => untrusting.close());
  await t.rejects(
    request(`https://127.0.0.1:${port}/healthz`, { dispatcher: untrusting }),
    'a client that does not trust the CA refuses the connection',
  );
});

t.test('an HTTPS participant signed by the configured CA is verified and called', async (t) => {
  const p = await httpsParticipant(t, certs.serverCert, certs.serverKey);
  const h = await harness(t, { participants: { participantCaFile: certs.files.caCert } });
  const res = await begin(h, p.url);
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.json().state, 'committed');
  t.same(p.received, ['/tx/prepare', '/tx/commit']);
});

t.test('an untrusted participant is refused: its prepare is no vote, the transaction aborts', async (t) => {
  const p = await httpsParticipant(t, certs.untrustedCert, certs.untrustedKey);
  const h = await harness(t, { participants: { participantCaFile: certs.files.caCert } });
  const res = await begin(h, p.url);
  t.equal(res.statusCode, 409, res.body);
  const tx = res.json().transaction;
  t.equal(tx.outcome, 'abort');
  t.not(tx.participants[0].vote, 'yes', 'never counted as yes');
  t.same(p.received, [], 'no request reached it over an unverified connection');
  // Without the CA file, the test CA is not trusted either (system store only).
  const p2 = await httpsParticipant(t, certs.serverCert, certs.serverKey);
  const plain = await harness(t, {});
  const refused = await begin(plain, p2.url);
  t.equal(refused.statusCode, 409);
  t.same(p2.received, []);
});

t.test("mutual TLS: a participant that demands a client certificate gets commitd's", async (t) => {
  const p = await httpsParticipant(t, certs.serverCert, certs.serverKey, true);
  const without = await harness(t, { participants: { participantCaFile: certs.files.caCert } });
  const refused = await begin(without, p.url);
  t.equal(refused.statusCode, 409, 'without a client certificate: refused by the participant, aborted');
  t.same(p.received, []);
  const withCert = await harness(t, {
    participants: {
      participantCaFile: certs.files.caCert,
      participantCertFile: certs.files.clientCert,
      participantKeyFile: certs.files.clientKey,
    },
  });
  const res = await begin(withCert, p.url);
  t.equal(res.statusCode, 200, res.body);
  t.same(p.received, ['/tx/prepare', '/tx/commit']);
  t.same(p.clientSubjects, ['commitd', 'commitd'], 'commitd presented its client certificate');
});
