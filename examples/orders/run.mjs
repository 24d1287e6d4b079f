// Orders and an `orders.placed` event in one commitd transaction, and a
// shipping service that consumes the event with the kit's inbox. Processes:
// nats-server (a private one with JetStream, unless NATS_URL names one),
// commitd (COMMITD_NATS_URL set), the orders service (the shop example's:
// a kit participant on SQLite) and the shipping consumer (shipping.mjs).
// Scenarios:
// 1. an order commits: the order is confirmed and the event published,
//    shipped once;
// 2. an order the orders service refuses aborts: no event, nothing shipped;
// 3. the same event stored twice (published again after the stream's
//    duplicate window): the inbox ships it once.
// 1 and 2 need a commitd with message participants; without them the run
// says "commitd half: skipped" and runs 3 alone.
// Usage: npm run example:orders  (builds, then runs this; exits 0 when consistent)
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import { CommitdClient, TransactionAbortedError } from 'commitd/client';
import { startProcess } from '../support/processes.mjs';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-orders-'));
const children = new Set();
const say = (line) => console.log(line);
/** The stream's duplicate window, short so scenario 3 can step past it. */
const DUPLICATE_WINDOW_MS = 1_000;

const freePort = () =>
  new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
const until = async (what, check, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const shipments = (orderTx) => {
  const d = new Database(path.join(dir, 'shipping.db'), { readonly: true });
  try {
    return d.prepare('SELECT count(*) AS n FROM shipment WHERE order_tx = ?').get(orderTx).n;
  } finally {
    d.close();
  }
};
const orderStatus = (orderTx) => {
  const d = new Database(path.join(dir, 'orders.db'), { readonly: true });
  try {
    return d.prepare('SELECT status FROM orders WHERE tx = ?').get(orderTx)?.status ?? 'none';
  } finally {
    d.close();
  }
};

let natsUrl = process.env.NATS_URL;
if (natsUrl === undefined) {
  const port = await freePort();
  await startProcess(
    children,
    'nats-server',
    ['nats-server', '-js', '-a', '127.0.0.1', '-p', String(port), '-sd', path.join(dir, 'nats')],
    {},
    (out) => /Server is ready/.test(out) && port,
  );
  natsUrl = `nats://127.0.0.1:${port}`;
}
const nc = await connect({ servers: natsUrl });
const jsm = await jetstreamManager(nc);
// The user's stream: commitd creates none. Its duplicate window drops a republish within it.
const stream = `ORDERS_${process.pid}`;
await jsm.streams.add({ name: stream, subjects: ['orders.placed'], duplicate_window: DUPLICATE_WINDOW_MS * 1_000_000 });

const commitd = await startProcess(
  children,
  'commitd',
  path.join(root, 'dist/src/main.js'),
  {
    COMMITD_PORT: '0',
    COMMITD_HOST: '127.0.0.1',
    COMMITD_DATA_DIR: path.join(dir, 'commitd'),
    COMMITD_LOG_LEVEL: 'info',
    COMMITD_NATS_URL: natsUrl,
  },
  (out) => /commitd ready/.test(out) && Number(/listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]),
);
const orders = await startProcess(
  children,
  'orders',
  path.join(here, '../shop/orders.mjs'),
  { PORT: '0', DB: path.join(dir, 'orders.db') },
  (out) => Number(/orders listening (\d+)/.exec(out)?.[1]),
);
let shippingLog = '';
await startProcess(
  children,
  'shipping',
  path.join(here, 'shipping.mjs'),
  { NATS_URL: natsUrl, DB: path.join(dir, 'shipping.db'), STREAM: stream },
  (out) => {
    shippingLog = out;
    return /shipping consuming/.test(out) && 1;
  },
);
const client = new CommitdClient({ url: `http://127.0.0.1:${commitd.port}` });
const order = (sku, qty) => [
  { name: 'orders', url: `http://127.0.0.1:${orders.port}/tx`, payload: { sku, qty } },
  { name: 'order-placed', message: { subject: 'orders.placed', data: { sku, qty } } },
];

let consistent = true;
try {
  // Does this commitd take message participants? A begin with one says.
  let messages = true;
  try {
    const probe = await client.begin({ participants: [order('teapot', 1)[1]] });
    await client.abort(probe.id);
  } catch (error) {
    messages = false;
    say(`commitd half: skipped: this commitd build has no message participants (${error.message})`);
  }

  if (messages) {
    say('1. 2 teapots: the order and its orders.placed event in one transaction; shipping ships it once');
    const one = await client.run({ participants: order('teapot', 2) });
    await until('the shipment', () => shipments(one.id) > 0);
    await new Promise((r) => setTimeout(r, 300)); // a second parcel would show by now
    say(`   ${one.id} ${one.state}; order ${orderStatus(one.id)}; shipments ${shipments(one.id)}`);
    if (orderStatus(one.id) !== 'confirmed' || shipments(one.id) !== 1) consistent = false;

    say('2. 50 teapots: the orders service votes no; the transaction aborts and no event is published');
    let abortedId = null;
    try {
      await client.run({ participants: order('teapot', 50) });
      consistent = false;
    } catch (error) {
      if (!(error instanceof TransactionAbortedError)) throw error;
      abortedId = error.transaction.id;
      say(`   ${abortedId} aborted (${error.transaction.participants[0].reason}); order ${orderStatus(abortedId)}`);
    }
    await new Promise((r) => setTimeout(r, 1_000));
    const events = (await jsm.streams.info(stream)).state.messages;
    say(`   events in the stream: ${events} (only the committed order's); shipments for it: ${shipments(abortedId)}`);
    if (events !== 1 || shipments(abortedId) !== 0) consistent = false;
  }

  say(`3. one event stored twice: published again after the stream's ${DUPLICATE_WINDOW_MS} ms duplicate window`);
  const h = headers();
  // The headers commitd sets on every message it publishes.
  h.set('Nats-Msg-Id', 'example:tx-replayed:order-placed');
  h.set('Commitd-Transaction-Id', 'tx-replayed');
  h.set('Commitd-Participant', 'order-placed');
  const js = jetstream(nc);
  const body = JSON.stringify({ sku: 'teapot', qty: 1 });
  await js.publish('orders.placed', body, { headers: h });
  await new Promise((r) => setTimeout(r, DUPLICATE_WINDOW_MS + 500));
  const again = await js.publish('orders.placed', body, { headers: h });
  say(`   the stream kept the second copy too (duplicate: ${again.duplicate})`);
  await until('both copies handled', () => (shippingLog.match(/tx-replayed/g) ?? []).length >= 2);
  say(`   shipping: ${shippingLog.match(/(applied|duplicate) example:tx-replayed\S*/g).join(', ')}`);
  say(`   shipments for tx-replayed: ${shipments('tx-replayed')}`);
  if (again.duplicate || shipments('tx-replayed') !== 1) consistent = false;

  say(consistent ? 'consistent' : 'INCONSISTENT');
  process.exitCode = consistent ? 0 : 1;
} finally {
  await client.close();
  await nc.close();
  for (const child of children) child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
}
