// Message participants (issue 21) through crashes: the real service as a
// child process killed with SIGKILL, a private nats-server with JetStream
// (file store) stopped, paused and restarted. After it all, every committed
// transaction's message is in the stream exactly once (counted by Nats-Msg-Id
// and by transaction id, read back from the broker's store) and no aborted
// one's ever is.

import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call, callRetrying, settled } from '../support/http.js';
import { natsServerAvailable, startNatsServer } from '../support/nats-server.js';
import { createStream, exactlyOnce, type TestStream } from '../support/nats-stream.js';
import { waitUntil } from '../support/participant.js';
import { type Service, startService } from '../support/service.js';

const missing = natsServerAvailable();
if (missing) {
  t.fail(`nats-server is needed: ${missing}`);
  process.exit(1);
}

interface Test {
  teardown(fn: () => unknown): void;
}

async function setup(t: Test) {
  const broker = await startNatsServer();
  const stream = await createStream(broker.url);
  const dataDir = tempDir('commitd-msg-crash-');
  const services: Service[] = [];
  t.teardown(async () => {
    for (const s of services) await s.kill();
    await stream.close();
    await broker.destroy();
  });
  const start = async () => {
    const s = await startService(dataDir, { COMMITD_NATS_URL: broker.url, COMMITD_PHASE_TWO_TIMEOUT_MS: '500' });
    services.push(s);
    return s;
  };
  return { broker, stream, start };
}

function message(stream: TestStream, what: string) {
  return { name: 'event', message: { subject: `${stream.prefix}.${what}`, data: { what } } };
}

async function participantOf(base: string, id: string) {
  return (await call(base, 'GET', `/v1/transactions/${id}`)).body.participants[0];
}

t.test('kill -9 before the publish (broker down): published once after the restart', async (t) => {
  const { broker, stream, start } = await setup(t);
  let s = await start();
  await broker.stop();
  const res = await call(s.url, 'POST', '/v1/transactions', {
    commit: true,
    participants: [message(stream, 'before')],
  });
  t.equal(res.body.outcome, 'commit');
  const id = res.body.id as string;
  await waitUntil(async () => ((await participantOf(s.url, id)).attempts ?? 0) >= 1, 5000);
  await s.kill();
  await broker.start();
  s = await start();
  const view = await settled(s.url, id);
  t.equal(view.state, 'committed');
  t.equal(view.participants[0].message.stream, stream.name);
  t.same(exactlyOnce(await stream.read(), [id], []), {
    duplicatesByTx: 0,
    duplicatesByMsgId: 0,
    lost: 0,
    publishedAborted: 0,
    checked: 1,
  });
});

t.test('kill -9 with the publish in flight (broker paused): stored once, the republish is a duplicate', async (t) => {
  const { broker, stream, start } = await setup(t);
  let s = await start();
  // Warm the connection so the publish goes out on an established socket.
  const warm = await call(s.url, 'POST', '/v1/transactions', { commit: true, participants: [message(stream, 'warm')] });
  await settled(s.url, warm.body.id);
  broker.pause();
  const res = await call(s.url, 'POST', '/v1/transactions', {
    commit: true,
    participants: [message(stream, 'flight')],
  });
  t.equal(res.body.outcome, 'commit');
  const id = res.body.id as string;
  // A publish timed out unanswered: it is in the paused broker's socket buffer.
  await waitUntil(async () => ((await participantOf(s.url, id)).attempts ?? 0) >= 1, 5000);
  await s.kill();
  broker.resume();
  // The broker now reads the publish commitd sent before dying, and stores it.
  await waitUntil(async () => (await stream.read()).length >= 2, 5000);
  s = await start();
  const view = await settled(s.url, id);
  t.equal(view.participants[0].acknowledged, true);
  const stored = await stream.read();
  t.equal(view.participants[0].message.seq, stored[1]?.seq, 'the duplicate acknowledgement names the stored one');
  t.same(exactlyOnce(stored, [warm.body.id, id], []), {
    duplicatesByTx: 0,
    duplicatesByMsgId: 0,
    lost: 0,
    publishedAborted: 0,
    checked: 2,
  });
});

t.test('load with kills of commitd and of the broker: every committed message once, no aborted one', async (t) => {
  const { broker, stream, start } = await setup(t);
  // Two rounds cover both kinds: round 0 kills the broker mid-round and then
  // commitd, round 1 kills commitd alone (after recovering round 0's cut
  // transactions). A third round repeated round 0 and cost a service start.
  const ROUNDS = 2;
  const PER_ROUND = 24;
  const known = new Set<string>();
  let kills = 0;
  let brokerRestarts = 0;
  let s = await start();
  for (let round = 0; round < ROUNDS; round++) {
    const calls: Promise<void>[] = [];
    let answered = 0;
    for (let i = 0; i < PER_ROUND; i++) {
      calls.push(
        (async () => {
          try {
            // Begun first (the id is known from then on), then committed, or
            // aborted by its client one time in five: that message must never appear.
            const begun = await call(s.url, 'POST', '/v1/transactions', {
              participants: [message(stream, i % 5 === 4 ? 'abort' : `r${round}`)],
            });
            if (!begun.body?.id) return;
            known.add(begun.body.id);
            await call(s.url, 'POST', `/v1/transactions/${begun.body.id}/${i % 5 === 4 ? 'abort' : 'commit'}`);
            answered++;
          } catch {
            // the kill cut the call: its transaction, if begun, is checked below
          }
        })(),
      );
      if (i === Math.floor(PER_ROUND / 2) && round % 2 === 0) {
        // The broker goes away mid-round: SIGKILL (file store) on even rounds.
        await broker.kill();
        brokerRestarts++;
      }
    }
    // SIGKILL once about half the round's calls are answered: the rest are
    // cut anywhere between their begin and their phase two.
    await waitUntil(() => answered >= PER_ROUND / 2, 15_000).catch(() => {});
    await s.kill();
    kills++;
    await Promise.all(calls);
    if (round % 2 === 0) await broker.start();
    s = await start();
  }
  // Every known transaction settles; then the stream is read back.
  const committed: string[] = [];
  const aborted: string[] = [];
  for (const id of known) {
    const res = await callRetrying(s.url, 'GET', `/v1/transactions/${id}`);
    if (res.status === 404) continue; // begun but never durable: nothing to publish
    const view = await settled(s.url, id, 30_000);
    (view.state === 'committed' ? committed : aborted).push(id);
  }
  const stored = await stream.read();
  // No message without a committed transaction behind it, known to the test or not.
  for (const m of stored) {
    const id = m.headers['Commitd-Transaction-Id'] ?? '';
    const view = (await call(s.url, 'GET', `/v1/transactions/${id}`)).body;
    t.equal(view.state, 'committed', `message of ${id} belongs to a committed transaction`);
  }
  const check = exactlyOnce(stored, committed, aborted);
  t.equal(check.duplicatesByTx, 0);
  t.equal(check.duplicatesByMsgId, 0);
  t.equal(check.lost, 0);
  t.equal(check.publishedAborted, 0);
  t.ok(committed.length > 0 && aborted.length > 0, 'both outcomes happened');
  t.comment(
    `figures: ${known.size} transactions (${committed.length} committed, ${aborted.length} aborted), ` +
      `${kills} kills of commitd, ${brokerRestarts} broker kills and restarts, ${check.checked} messages checked, ` +
      `duplicates ${check.duplicatesByMsgId}, lost ${check.lost}`,
  );
});
