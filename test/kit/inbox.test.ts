// The kit's inbox against a private nats-server with JetStream, on both
// stores (SQLite file, and PostgreSQL in a schema of this run's own): a
// message republished with the same Nats-Msg-Id after the stream's duplicate
// window (so the stream holds it twice) is applied once; a handler that
// throws is retried and what it wrote before throwing is rolled back; the
// broker restarted while messages are being consumed loses and doubles
// nothing; prune deletes only rows older than the age it is given.

import path from 'node:path';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import pg from 'pg';
import t from 'tap';
import { type InboxEvent, type InboxStore, PgInboxStore, SqliteInboxStore, startInbox } from '../../src/kit/inbox.js';
import { SqliteParticipantStore } from '../../src/kit/sqlite-store.js';
import { tempDir } from '../support/harness.js';
import { natsServerAvailable, startNatsServer } from '../support/nats-server.js';
import { waitUntil } from '../support/participant.js';

const unavailable = natsServerAvailable();
if (unavailable !== null) {
  t.fail(`nats-server is needed (.ci/run installs it): ${unavailable}`);
  process.exit(1);
}

const nats = await startNatsServer();
t.teardown(() => nats.destroy());
const producer: NatsConnection = await connect({ servers: nats.url, maxReconnectAttempts: -1 });
t.teardown(() => producer.close());
const jsm = await jetstreamManager(producer);
const js = jetstream(producer);

const connection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const schema = `inbox_${process.pid}_${Date.now()}`;
const admin = new pg.Pool({ ...connection, max: 2 });
await admin.query(`CREATE SCHEMA ${schema}`);
t.teardown(async () => {
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();
});

let streams = 0;
/** A stream of its own per case (file storage, so it survives a broker restart). */
async function newStream(duplicateWindowMs = 120_000): Promise<{ name: string; subject: string }> {
  streams += 1;
  const name = `ORDERS_${streams}`;
  const subject = `orders${streams}.placed`;
  await jsm.streams.add({
    name,
    subjects: [subject],
    storage: StorageType.File,
    duplicate_window: duplicateWindowMs * 1_000_000,
  });
  return { name, subject };
}

async function publish(subject: string, data: unknown, msgId?: string): Promise<void> {
  const h = natsHeaders();
  if (msgId !== undefined) h.set('Nats-Msg-Id', msgId);
  await js.publish(subject, JSON.stringify(data), { headers: h });
}

interface Order {
  readonly order: string;
}

/** The service's effect: one row per application, so a double shows as two rows. */
interface Effects<Tx> {
  readonly store: InboxStore<Tx>;
  apply(tx: Tx, order: string): Promise<void>;
  count(order: string): Promise<number>;
  close(): Promise<void>;
}

function sqliteEffects(): Effects<Database.Database> {
  const db = new Database(path.join(tempDir(), 'service.db'));
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE effect (n INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL)');
  return {
    store: new SqliteInboxStore(db),
    async apply(tx, order) {
      tx.prepare('INSERT INTO effect (order_id) VALUES (?)').run(order);
    },
    async count(order) {
      return (db.prepare('SELECT count(*) AS n FROM effect WHERE order_id = ?').get(order) as { n: number }).n;
    },
    async close() {
      db.close();
    },
  };
}

let pgTables = 0;
async function pgEffects(): Promise<Effects<pg.PoolClient>> {
  pgTables += 1;
  const effect = `${schema}.effect_${pgTables}`;
  await admin.query(`CREATE TABLE ${effect} (n SERIAL PRIMARY KEY, order_id TEXT NOT NULL)`);
  const pool = new pg.Pool({ ...connection, max: 4 });
  return {
    store: await PgInboxStore.open(pool, { table: `${schema}.inbox_${pgTables}` }),
    async apply(tx, order) {
      await tx.query(`INSERT INTO ${effect} (order_id) VALUES ($1)`, [order]);
    },
    async count(order) {
      const { rows } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${effect} WHERE order_id = $1`, [
        order,
      ]);
      return Number(rows[0]?.n);
    },
    close: () => pool.end(),
  };
}

const stores: Array<[string, () => Promise<Effects<unknown>>]> = [
  ['SQLite', async () => sqliteEffects() as Effects<unknown>],
  ['PostgreSQL', async () => (await pgEffects()) as Effects<unknown>],
];

for (const [storeName, makeEffects] of stores) {
  t.test(`${storeName}: a duplicate beyond the stream's duplicate window is applied once`, async (t) => {
    const effects = await makeEffects();
    t.teardown(() => effects.close());
    const stream = await newStream(500);
    await publish(stream.subject, { order: 'o-1' }, 'deployment-a:tx-1:order-placed');
    await new Promise((r) => setTimeout(r, 800)); // past the window: the broker stores it again
    await publish(stream.subject, { order: 'o-1' }, 'deployment-a:tx-1:order-placed');
    await publish(stream.subject, { order: 'o-2' }); // no Nats-Msg-Id: keyed by stream and sequence
    t.equal((await jsm.streams.info(stream.name)).state.messages, 3, 'the stream holds the duplicate');

    const events: InboxEvent[] = [];
    const inbox = await startInbox<Order, unknown>({
      servers: nats.url,
      stream: stream.name,
      consumer: 'orders-service',
      filterSubject: stream.subject,
      store: effects.store,
      handler: (tx, m) => effects.apply(tx, m.data.order),
      onEvent: (e) => events.push(e),
    });
    await waitUntil(() => events.length >= 3, 10_000, 'three deliveries');
    await inbox.stop();
    t.same(
      events.map((e) => e.kind),
      ['applied', 'duplicate', 'applied'],
    );
    t.equal(events[2]?.kind === 'applied' && events[2].id, `${stream.name}:3`);
    t.equal(await effects.count('o-1'), 1, 'o-1 applied once');
    t.equal(await effects.count('o-2'), 1, 'o-2 applied once');
    const consumer = await jsm.consumers.info(stream.name, 'orders-service');
    t.equal(consumer.num_ack_pending + consumer.num_pending, 0, 'all acked');
  });

  t.test(`${storeName}: a handler that throws is retried; its partial work is rolled back`, async (t) => {
    const effects = await makeEffects();
    t.teardown(() => effects.close());
    const stream = await newStream();
    await publish(stream.subject, { order: 'o-3' }, 'tx-3');
    const events: InboxEvent[] = [];
    const seen: Array<{ deliveryCount: number; headers: Readonly<Record<string, string>> }> = [];
    const inbox = await startInbox<Order, unknown>({
      servers: nats.url,
      stream: stream.name,
      consumer: 'c',
      filterSubject: stream.subject,
      store: effects.store,
      retryDelayMs: 50,
      async handler(tx, m) {
        seen.push({ deliveryCount: m.deliveryCount, headers: m.headers });
        await effects.apply(tx, m.data.order); // written, then thrown away with the transaction
        if (m.deliveryCount < 3) throw new Error(`failing delivery ${m.deliveryCount}`);
      },
      onEvent: (e) => events.push(e),
    });
    await waitUntil(() => events.some((e) => e.kind === 'applied'), 10_000, 'the third delivery to apply');
    await inbox.stop();
    t.same(
      events.map((e) => e.kind),
      ['failed', 'failed', 'applied'],
    );
    t.same(
      seen.map((s) => s.deliveryCount),
      [1, 2, 3],
    );
    t.equal(seen[0]?.headers['Nats-Msg-Id'], 'tx-3', 'the handler sees the headers');
    t.equal(await effects.count('o-3'), 1, 'two rolled back, one committed');
  });
}

t.test('the broker restarted mid-consumption: every message applied exactly once', async (t) => {
  const effects = await pgEffects();
  t.teardown(() => effects.close());
  const stream = await newStream();
  const total = 60;
  for (let i = 0; i < total; i += 1) await publish(stream.subject, { order: `r-${i}` }, `restart-${i}`);
  const applied = new Set<string>();
  const inbox = await startInbox<Order, pg.PoolClient>({
    servers: nats.url,
    stream: stream.name,
    consumer: 'c',
    filterSubject: stream.subject,
    store: effects.store as InboxStore<pg.PoolClient>,
    concurrency: 4,
    ackWaitMs: 2_000,
    retryDelayMs: 50,
    async handler(tx, m) {
      await effects.apply(tx, m.data.order);
      await new Promise((r) => setTimeout(r, 20)); // slow enough for the restart to land mid-way
    },
    onEvent: (e) => {
      if (e.kind === 'applied') applied.add(e.id);
    },
  });
  await waitUntil(() => applied.size >= 10, 10_000, 'some messages applied');
  await nats.stop();
  const appliedWhileDown = applied.size;
  await new Promise((r) => setTimeout(r, 500));
  await nats.start();
  await waitUntil(() => applied.size === total, 30_000, 'every message applied after the restart');
  await inbox.stop();
  t.ok(appliedWhileDown < total, `the restart came mid-way (${appliedWhileDown} of ${total} applied)`);
  for (let i = 0; i < total; i += 1) t.equal(await effects.count(`r-${i}`), 1, `r-${i} once`);
});

t.test('prune deletes the rows older than the age given, and only those', async (t) => {
  const effects = sqliteEffects();
  t.teardown(() => effects.close());
  await effects.store.once('x', 'old', async () => {});
  await new Promise((r) => setTimeout(r, 300));
  await effects.store.once('x', 'new', async () => {});
  t.equal(await effects.store.prune(200), 1, 'the old row');
  t.equal(await effects.store.once('x', 'new', async () => {}), 'duplicate', 'the new row kept');
  t.equal(await effects.store.once('x', 'old', async () => {}), 'applied', 'the old id is forgotten');
});

t.test('SQLite: the inbox and the participant store on one connection take turns', async (t) => {
  const db = new Database(path.join(tempDir(), 'shared.db'));
  t.teardown(() => db.close());
  const inbox = new SqliteInboxStore(db);
  const participant = new SqliteParticipantStore(db);
  // The handler awaits inside its transaction; the participant's write comes meanwhile.
  const handled = inbox.once('x', 'm-1', () => new Promise((r) => setTimeout(r, 50)));
  const written = participant.run({ transactionId: 'tx-1', participant: 'p' }, (tx) =>
    participant.write(tx, {
      transactionId: 'tx-1',
      participant: 'p',
      state: 'prepared',
      vote: 'yes',
      reason: null,
      preparedAtMs: 1,
      updatedAtMs: 1,
    }),
  );
  t.same(await Promise.allSettled([handled, written]), [
    { status: 'fulfilled', value: 'applied' },
    { status: 'fulfilled', value: undefined },
  ]);
});

t.test('PostgreSQL: two consumers share the durable consumer; copies handled at once apply once', async (t) => {
  const effects = await pgEffects();
  t.teardown(() => effects.close());
  const stream = await newStream(300);
  // 16 messages, 8 in hand per consumer: both copies of every id are in flight together.
  const total = 8;
  for (let i = 0; i < total; i++) await publish(stream.subject, { order: `s-${i}` }, `shared-${i}`);
  await new Promise((r) => setTimeout(r, 500)); // past the window: every id stored twice
  for (let i = 0; i < total; i++) await publish(stream.subject, { order: `s-${i}` }, `shared-${i}`);
  const events: InboxEvent[] = [];
  const start = () =>
    startInbox<Order, pg.PoolClient>({
      servers: nats.url,
      stream: stream.name,
      consumer: 'shared',
      filterSubject: stream.subject,
      store: effects.store as InboxStore<pg.PoolClient>,
      concurrency: 8,
      async handler(tx, m) {
        await effects.apply(tx, m.data.order);
        await new Promise((r) => setTimeout(r, 100)); // both copies of an id in their transactions at once
      },
      onEvent: (e) => events.push(e),
    });
  const inboxes = await Promise.all([start(), start()]);
  await waitUntil(() => events.length >= total * 2, 20_000, 'every copy handled');
  await Promise.all(inboxes.map((inbox) => inbox.stop()));
  t.equal(events.filter((e) => e.kind === 'applied').length, total);
  t.equal(events.filter((e) => e.kind === 'duplicate').length, total);
  for (let i = 0; i < total; i++) t.equal(await effects.count(`s-${i}`), 1, `s-${i} once`);
});
