// The shipping service: it consumes `orders.placed` from JetStream with the
// kit's inbox and ships each order once. The shipment row and the inbox row
// (the message's Nats-Msg-Id) commit in one SQLite transaction, so a
// redelivery or a duplicate the broker no longer catches ships nothing more.
// The shipment table has no unique key on purpose: only the inbox stands
// between a duplicate and a second parcel.
// env: NATS_URL, STREAM (default ORDERS), DB (SQLite file)
import Database from 'better-sqlite3';
import { SqliteInboxStore, startInbox } from 'commitd/participant/inbox';

const db = new Database(process.env.DB ?? 'shipping.db');
db.pragma('journal_mode = WAL');
db.exec(
  'CREATE TABLE IF NOT EXISTS shipment (n INTEGER PRIMARY KEY AUTOINCREMENT, order_tx TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL)',
);

const store = new SqliteInboxStore(db);
const inbox = await startInbox({
  servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
  stream: process.env.STREAM ?? 'ORDERS',
  consumer: 'shipping',
  filterSubject: 'orders.placed',
  store,
  handler(tx, { data, headers }) {
    // The order is commitd's transaction: its id is in the header commitd sets.
    tx.prepare('INSERT INTO shipment (order_tx, sku, qty) VALUES (?, ?, ?)').run(
      headers['Commitd-Transaction-Id'],
      data.sku,
      data.qty,
    );
  },
  onEvent(event) {
    console.log(`shipping: ${event.kind} ${event.id ?? ''}`);
  },
});
// Prune inbox rows a day old: far longer than the stream's duplicate window
// and any redelivery (see the inbox's documentation on retention).
const pruning = setInterval(() => store.prune(24 * 3600_000), 3600_000);
console.log('shipping consuming');
process.once('SIGTERM', async () => {
  clearInterval(pruning);
  await inbox.stop();
  db.close();
  process.exit(0);
});
