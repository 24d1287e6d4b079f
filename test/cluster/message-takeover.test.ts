// Message participants with several instances on one private PostgreSQL
// store: publishes in flight (the broker paused) when one instance is
// SIGKILLed; the survivor takes its shards over and publishes again. Every
// committed transaction's message is in the stream exactly once, counted by
// Nats-Msg-Id and by transaction id; no aborted one's ever is.

import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call, callRetrying, settled } from '../support/http.js';
import { natsServerAvailable, startNatsServer } from '../support/nats-server.js';
import { createStream, exactlyOnce } from '../support/nats-stream.js';
import { waitUntil } from '../support/participant.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { type Service, startService } from '../support/service.js';

const missing = natsServerAvailable();
if (missing) {
  t.fail(`nats-server is needed: ${missing}`);
  process.exit(1);
}

const cluster = privateCluster(t);

t.test('a takeover mid-publish: every committed message once, no aborted one', async (t) => {
  const broker = await startNatsServer();
  const stream = await createStream(broker.url);
  t.teardown(async () => {
    await stream.close();
    await broker.destroy();
  });
  const schema = `messages_${Date.now().toString(36)}`;
  const start = async (): Promise<Service> => {
    const service = await startService(tempDir('commitd-msg-cluster-'), {
      COMMITD_LEASE_MS: '3000',
      COMMITD_PEER_PROBE_INTERVAL_MS: '100',
      COMMITD_PEER_SILENCE_MS: '1000',
      COMMITD_STORE_URL: cluster().url(),
      COMMITD_STORE_SCHEMA: schema,
      COMMITD_PORT: String(await freePort()),
      COMMITD_NATS_URL: broker.url,
      COMMITD_PHASE_TWO_TIMEOUT_MS: '500',
    });
    t.teardown(() => service.kill('SIGKILL'));
    return service;
  };
  const a = await start();
  const b = await start();
  const message = (what: string) => ({
    name: 'event',
    message: { subject: `${stream.prefix}.${what}`, data: { what } },
  });
  // Warm both instances' broker connections.
  for (const s of [a, b]) {
    const res = await callRetrying(s.url, 'POST', '/v1/transactions', {
      commit: true,
      participants: [message('warm')],
    });
    await settled(s.url, res.body.id);
  }
  broker.pause();
  const committed: string[] = [];
  const aborted: string[] = [];
  for (let i = 0; i < 20; i++) {
    const begun = await callRetrying(a.url, 'POST', '/v1/transactions', { participants: [message(`n${i}`)] });
    t.equal(begun.status, 201);
    const id = begun.body.id as string;
    const verb = i % 4 === 3 ? 'abort' : 'commit';
    const res = await callRetrying(a.url, 'POST', `/v1/transactions/${id}/${verb}`);
    t.ok(res.status === 200 || res.status === 202, `${verb} answered ${res.status}`);
    (verb === 'commit' ? committed : aborted).push(id);
  }
  // Publishes of A's own transactions are out and unanswered.
  await waitUntil(
    async () => {
      const views = await Promise.all(committed.map((id) => call(a.url, 'GET', `/v1/transactions/${id}`)));
      return views.filter((v) => (v.body.participants?.[0]?.attempts ?? 0) >= 1).length >= committed.length / 2;
    },
    10_000,
    'publishes in flight',
  );
  await a.kill('SIGKILL');
  broker.resume();
  for (const id of [...committed, ...aborted]) await settled(b.url, id, 30_000);
  const stored = (await stream.read()).filter((m) => !m.subject.endsWith('.warm'));
  const check = exactlyOnce(stored, committed, aborted);
  t.same(check, {
    duplicatesByTx: 0,
    duplicatesByMsgId: 0,
    lost: 0,
    publishedAborted: 0,
    checked: committed.length,
  });
  t.comment(
    `figures: ${committed.length + aborted.length} transactions (${committed.length} committed, ${aborted.length} aborted), ` +
      `1 instance SIGKILLed mid-publish and taken over, 1 broker pause, ${check.checked} messages checked, ` +
      `duplicates ${check.duplicatesByMsgId}, lost ${check.lost}`,
  );
});
