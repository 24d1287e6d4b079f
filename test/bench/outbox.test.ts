// The benchmark's hand-written outbox baseline (bench/outbox.ts) does what
// it claims, so the comparison is against a correct one: every committed
// order's event reaches the stream once, with its Nats-Msg-Id; a rolled-back
// order's never does; the outbox is empty afterwards. Against the running
// PostgreSQL (a database of this run's own) and a private nats-server.

import { jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import t from 'tap';
import { createOutboxSchema, placeOrderWithOutbox, startRelay } from '../../bench/outbox.js';
import { natsServerAvailable, startNatsServer } from '../support/nats-server.js';
import { waitUntil } from '../support/participant.js';

const unavailable = natsServerAvailable();
if (unavailable !== null) {
  t.fail(`nats-server is needed (.ci/run installs it): ${unavailable}`);
  process.exit(1);
}

const server = { host: '127.0.0.1', port: 5432, user: 'postgres' };
const database = `outbox_${process.pid}_${Date.now()}`;
const admin = new pg.Client({ ...server, database: 'postgres' });
await admin.connect();
await admin.query(`CREATE DATABASE ${database}`);
t.teardown(async () => {
  await admin.query(`DROP DATABASE ${database} WITH (FORCE)`);
  await admin.end();
});
const nats = await startNatsServer();
t.teardown(() => nats.destroy());

t.test('committed orders reach the stream once each; a rolled-back one never', async (t) => {
  const connectionString = `postgres://postgres@127.0.0.1:5432/${database}`;
  const pool = new pg.Pool({ connectionString, max: 2 });
  t.teardown(() => pool.end());
  await createOutboxSchema(pool);
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.placed'], storage: StorageType.File });
  const relay = await startRelay(connectionString, nc);
  t.teardown(() => relay.stop());

  const client = await pool.connect();
  for (let i = 0; i < 40; i++) await placeOrderWithOutbox(client, { id: `o-${i}`, item: 'book', qty: 1 });
  // A write that fails after the order row: the outbox row goes with it.
  await t.rejects(placeOrderWithOutbox(client, { id: 'o-0', item: 'duplicate key', qty: 1 }));
  client.release();

  await waitUntil(() => relay.relayed() >= 40, 15_000, 'the relay to publish 40');
  const info = await jsm.streams.info('ORDERS');
  t.equal(info.state.messages, 40, 'forty messages, no more');
  const ids = new Set<string>();
  for (let seq = 1; seq <= 40; seq++) {
    const m = await jsm.streams.getMessage('ORDERS', { seq });
    ids.add(m?.header.get('Nats-Msg-Id') ?? '');
  }
  t.equal(ids.size, 40, 'forty distinct Nats-Msg-Ids');
  t.ok(ids.has('outbox:o-39'));
  const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox');
  t.equal(rows[0]?.n, 0, 'the outbox is empty');
});
