// The payments service: accounts and payments in its own SQLite, a
// participant through the kit. prepare holds the amount (or declines);
// commit captures it; abort releases the hold.
// env: PORT, DB (SQLite file)
import http from 'node:http';
import Database from 'better-sqlite3';
import { createParticipant, nodeHandler } from 'commitd/participant';
import { SqliteParticipantStore } from 'commitd/participant/sqlite';

const db = new Database(process.env.DB ?? 'payments.db');
db.pragma('journal_mode = WAL');
db.exec(`CREATE TABLE IF NOT EXISTS account (customer TEXT PRIMARY KEY, balance INTEGER NOT NULL, held INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS payment (tx TEXT PRIMARY KEY, customer TEXT NOT NULL, amount INTEGER NOT NULL, status TEXT NOT NULL);
         INSERT OR IGNORE INTO account VALUES ('alice', 10000, 0), ('bob', 500, 0);`);

const payments = createParticipant({
  store: new SqliteParticipantStore(db),
  signingSecret: process.env.COMMITD_SIGNING_SECRET || null,
  prepare({ transactionId, payload: { customer, amount }, tx }) {
    const a = tx.prepare('SELECT balance - held AS free FROM account WHERE customer = ?').get(customer);
    if (!a || a.free < amount) return { vote: 'no', reason: 'card declined' };
    tx.prepare('UPDATE account SET held = held + ? WHERE customer = ?').run(amount, customer);
    tx.prepare("INSERT INTO payment VALUES (?, ?, ?, 'held')").run(transactionId, customer, amount);
    return 'yes';
  },
  commit({ transactionId, tx }) {
    const p = tx.prepare('SELECT customer, amount FROM payment WHERE tx = ?').get(transactionId);
    tx.prepare('UPDATE account SET balance = balance - ?, held = held - ? WHERE customer = ?').run(
      p.amount,
      p.amount,
      p.customer,
    );
    tx.prepare("UPDATE payment SET status = 'captured' WHERE tx = ?").run(transactionId);
  },
  abort({ transactionId, tx }) {
    const p = tx.prepare('SELECT customer, amount FROM payment WHERE tx = ?').get(transactionId);
    tx.prepare('UPDATE account SET held = held - ? WHERE customer = ?').run(p.amount, p.customer);
    tx.prepare("UPDATE payment SET status = 'released' WHERE tx = ?").run(transactionId);
  },
}).start();

const server = http.createServer(nodeHandler(payments));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () =>
  console.log(`payments listening ${server.address().port}`),
);
