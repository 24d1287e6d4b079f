// Instances that speak HTTPS to each other with a private CA
// (COMMITD_PEER_CA_FILE, issue 23): the health probes and forwarded calls
// trust the CA, so a call sent to the instance that does not own the
// transaction is served by the owner over HTTPS.

import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { makeCerts } from '../support/certs.js';
import { tempDir } from '../support/harness.js';
import { waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);
const certs = makeCerts();
t.teardown(() => certs.remove());
const trusting = new Agent({ connect: { ca: certs.caCert } });
t.teardown(() => trusting.close());

async function json(url: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  const res = await request(url, {
    method: method as 'GET' | 'POST',
    dispatcher: trusting,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : null };
}

async function instances(t: Test, env: Record<string, string>): Promise<string[]> {
  const schema = `peer_tls_${process.pid}_${Math.floor(Math.random() * 1e9)}`;
  const urls: string[] = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const service: Service = await startService(tempDir('commitd-peer-tls-'), {
      COMMITD_LEASE_MS: '3000',
      COMMITD_PEER_PROBE_INTERVAL_MS: '100',
      COMMITD_PEER_SILENCE_MS: '1000',
      COMMITD_STORE_URL: cluster().url(),
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(port),
      COMMITD_TLS_CERT_FILE: certs.files.serverCert,
      COMMITD_TLS_KEY_FILE: certs.files.serverKey,
      COMMITD_ADVERTISE_URL: url,
      ...env,
    });
    t.teardown(() => service.kill('SIGKILL'));
    urls.push(url);
  }
  return urls;
}

t.test('with COMMITD_PEER_CA_FILE, a call to the non-owner is served by the owner over HTTPS', async (t) => {
  const [a, b] = (await instances(t, { COMMITD_PEER_CA_FILE: certs.files.caCert })) as [string, string];
  await waitUntil(
    async () => {
      const owned = await Promise.all(
        [a, b].map(async (u) => (await json(`${u}/v1/cluster`)).body.instances.find((i: any) => i.self)?.shards),
      );
      return owned[0] === 16 && owned[1] === 16;
    },
    15_000,
    'the shards shared evenly (the probes reach each other)',
  );
  const begun = await json(`${a}/v1/transactions`, 'POST', { participants: [] });
  t.equal(begun.status, 201);
  const committed = await json(`${b}/v1/transactions/${begun.body.id}/commit`, 'POST');
  t.equal(committed.status, 200, JSON.stringify(committed.body));
  t.equal(committed.body.outcome, 'commit');
});

t.test('without it, the owner cannot be reached over HTTPS: 503', async (t) => {
  const [a, b] = (await instances(t, {})) as [string, string];
  const begun = await json(`${a}/v1/transactions`, 'POST', { participants: [] });
  t.equal(begun.status, 201);
  const read = await json(`${b}/v1/transactions/${begun.body.id}`);
  // The probes fail too, so A may be taken for gone meanwhile; either way B
  // could not ask A, which is what the setting is for.
  t.not(read.status, 200, JSON.stringify(read.body));
});
