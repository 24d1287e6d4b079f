// The orders service: stock and orders in its own SQLite, a participant
// through the kit. prepare reserves the items and writes a pending order;
// commit confirms it and takes the stock; abort releases it.
// env: PORT, DB (SQLite file)
import http from 'node:http';
import Database from 'better-sqlite3';
import { createParticipant, nodeHandler } from 'commitd/participant';
import { SqliteParticipantStore } from 'commitd/participant/sqlite';

const db = new Database(process.env.DB ?? 'orders.db');
db.pragma('journal_mode = WAL');
db.exec(`CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL, reserved INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS orders (tx TEXT PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER NOT NULL, status TEXT NOT NULL);
         INSERT OR IGNORE INTO stock VALUES ('teapot', 5, 0);`);

const shop = createParticipant({
  store: new SqliteParticipantStore(db),
  signingSecret: process.env.COMMITD_SIGNING_SECRET || null,
  prepare({ transactionId, payload: { sku, qty }, tx }) {
    const free = tx.prepare('SELECT available - reserved AS n FROM stock WHERE sku = ?').get(sku)?.n ?? 0;
    if (free < qty) return { vote: 'no', reason: `only ${free} ${sku} left` };
    tx.prepare('UPDATE stock SET reserved = reserved + ? WHERE sku = ?').run(qty, sku);
    tx.prepare("INSERT INTO orders VALUES (?, ?, ?, 'pending')").run(transactionId, sku, qty);
    return 'yes';
  },
  commit({ transactionId, tx }) {
    const o = tx.prepare('SELECT sku, qty FROM orders WHERE tx = ?').get(transactionId);
    tx.prepare('UPDATE stock SET available = available - ?, reserved = reserved - ? WHERE sku = ?').run(
      o.qty,
      o.qty,
      o.sku,
    );
    tx.prepare("UPDATE orders SET status = 'confirmed' WHERE tx = ?").run(transactionId);
  },
  abort({ transactionId, tx }) {
    const o = tx.prepare('SELECT sku, qty FROM orders WHERE tx = ?').get(transactionId);
    tx.prepare('UPDATE stock SET reserved = reserved - ? WHERE sku = ?').run(o.qty, o.sku);
    tx.prepare("UPDATE orders SET status = 'cancelled' WHERE tx = ?").run(transactionId);
  },
}).start();

const server = http.createServer(nodeHandler(shop));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () =>
  console.log(`orders listening ${server.address().port}`),
);
