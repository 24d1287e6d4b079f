// The inbox's consumer as a real process, SIGKILLed after the handler's
// transaction committed and before the ack: the broker redelivers after the
// ack wait, the restarted consumer finds the message's id in its inbox and
// acks without running the handler (the effect is there exactly once). And:
// importing the kit's entries loads no NATS package; only startInbox does.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { natsServerAvailable, startNatsServer } from '../support/nats-server.js';
import { waitUntil } from '../support/participant.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');

const unavailable = natsServerAvailable();
if (unavailable !== null) {
  t.fail(`nats-server is needed (.ci/run installs it): ${unavailable}`);
  process.exit(1);
}

const nats = await startNatsServer();
t.teardown(() => nats.destroy());
const producer = await connect({ servers: nats.url });
t.teardown(() => producer.close());
const jsm = await jetstreamManager(producer);
await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.placed'], storage: StorageType.File });

interface Consumer {
  readonly child: ChildProcess;
  readonly lines: () => string[];
  readonly exited: Promise<NodeJS.Signals | number | null>;
}

async function startConsumer(db: string, env: Record<string, string> = {}): Promise<Consumer> {
  const child = spawn(process.execPath, [path.join(FIXTURES, 'inbox-process.mjs')], {
    env: { ...process.env, NATS_URL: nats.url, STREAM: 'ORDERS', SUBJECT: 'orders.placed', DB: db, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  const consumer = { child, exited, lines: () => out.split('\n').filter((l) => l.startsWith('{')) };
  await Promise.race([
    waitUntil(() => out.includes('consuming') || child.exitCode !== null || child.signalCode !== null, 10_000, 'start'),
  ]);
  return consumer;
}

function effects(db: string): number {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare("SELECT count(*) AS n FROM effect WHERE order_id = 'k-1'").get() as { n: number }).n;
  } finally {
    d.close();
  }
}

t.test('SIGKILL between the commit and the ack: the redelivery is a no-op', async (t) => {
  const db = path.join(tempDir(), 'orders.db');
  const h = headers();
  h.set('Nats-Msg-Id', 'deployment:tx-k-1:order-placed');
  await jetstream(producer).publish('orders.placed', JSON.stringify({ order: 'k-1' }), { headers: h });

  const first = await startConsumer(db, { CRASH_AFTER_COMMIT: '1', ACK_WAIT_MS: '1000' });
  t.equal(await first.exited, 'SIGKILL', 'killed itself after the commit');
  t.equal(effects(db), 1, 'the effect committed');
  const unacked = await jsm.consumers.info('ORDERS', 'orders-service');
  t.equal(unacked.num_ack_pending + unacked.num_pending, 1, 'the message is not acked');

  const second = await startConsumer(db, { ACK_WAIT_MS: '1000' });
  t.teardown(() => second.child.kill('SIGKILL'));
  await waitUntil(() => second.lines().length > 0, 15_000, 'the redelivery');
  t.same(
    second.lines().map((l) => JSON.parse(l)),
    [{ kind: 'duplicate', id: 'deployment:tx-k-1:order-placed' }],
  );
  second.child.kill('SIGTERM');
  t.equal(await second.exited, 0, 'clean stop');
  t.equal(effects(db), 1, 'the effect is there exactly once');
  const acked = await jsm.consumers.info('ORDERS', 'orders-service');
  t.equal(acked.num_ack_pending + acked.num_pending, 0, 'acked now');
  t.equal(acked.delivered.stream_seq, 1);
});

t.test('the kit entries load no NATS package; startInbox does', async (t) => {
  const run = (code: string) =>
    spawnSync(
      process.execPath,
      ['--import', path.join(FIXTURES, 'forbid-nats.mjs'), '--input-type=module', '-e', code],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
  const imports = run(
    "await import('commitd/participant'); await import('commitd/participant/sqlite'); await import('commitd/participant/pg'); await import('commitd/client'); await import('commitd/participant/inbox'); console.log('imported')",
  );
  t.equal(imports.stdout.trim(), 'imported', imports.stderr);
  const started = run(
    "const { startInbox } = await import('commitd/participant/inbox'); await startInbox({ servers: 'nats://127.0.0.1:1', stream: 's', consumer: 'c', filterSubject: 's', store: {}, handler() {} }).catch((e) => console.log(e.message))",
  );
  t.match(started.stdout, /NATS package loaded: @nats-io\//, 'the hook sees the load on start');
});
