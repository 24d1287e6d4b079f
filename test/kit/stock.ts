// A stock service for the kit's tests: reserves items in prepare, takes them
// in commit, releases them in abort, all in its own SQLite database through
// the kit. Counts every call of its callbacks so tests can tell a repeat
// answered from the record from one that reached the service.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { nodeHandler } from '../../src/kit/node-handler.js';
import { createParticipant, type Participant, type ParticipantOptions } from '../../src/kit/participant.js';
import { SqliteParticipantStore } from '../../src/kit/sqlite-store.js';

export interface StockService {
  readonly url: string;
  readonly db: Database.Database;
  readonly participant: Participant<Database.Database>;
  readonly calls: { prepare: number; commit: number; abort: number };
  /** Set to make the next prepares throw after writing (a crash inside the service's transaction). */
  failPrepare: boolean;
  /** Holds every prepare until released (to send a repeat while the first is in flight). */
  gate: Promise<void> | null;
  available(sku: string): number;
  reserved(sku: string): number;
  record(transactionId: string, participant: string): Record<string, unknown> | undefined;
  close(): Promise<void>;
}

export async function startStockService(
  dir: string,
  options: Partial<ParticipantOptions<Database.Database>> = {},
): Promise<StockService> {
  const db = new Database(path.join(dir, 'stock.db'));
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL, reserved INTEGER NOT NULL);
           CREATE TABLE IF NOT EXISTS reservation (tx TEXT PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER NOT NULL);
           INSERT OR IGNORE INTO stock VALUES ('apple', 10, 0), ('pear', 1, 0);`);
  const calls = { prepare: 0, commit: 0, abort: 0 };
  const service: Partial<StockService> & { failPrepare: boolean; gate: Promise<void> | null } = {
    failPrepare: false,
    gate: null,
  };
  const participant = createParticipant<Database.Database>({
    store: new SqliteParticipantStore(db),
    backgroundIntervalMs: 0,
    prepare: async ({ transactionId, payload, tx }) => {
      calls.prepare++;
      if (service.gate) await service.gate;
      const { sku, qty } = payload as { sku: string; qty: number };
      const changed = tx
        .prepare('UPDATE stock SET reserved = reserved + ? WHERE sku = ? AND available - reserved >= ?')
        .run(qty, sku, qty).changes;
      if (changed === 0) return { vote: 'no', reason: `not enough ${sku}` };
      tx.prepare('INSERT INTO reservation VALUES (?, ?, ?)').run(transactionId, sku, qty);
      if (service.failPrepare) throw new Error('the service failed after writing');
      return 'yes';
    },
    commit: ({ transactionId, tx }) => {
      calls.commit++;
      const r = tx.prepare('SELECT sku, qty FROM reservation WHERE tx = ?').get(transactionId) as {
        sku: string;
        qty: number;
      };
      tx.prepare('UPDATE stock SET available = available - ?, reserved = reserved - ? WHERE sku = ?').run(
        r.qty,
        r.qty,
        r.sku,
      );
      tx.prepare('DELETE FROM reservation WHERE tx = ?').run(transactionId);
    },
    abort: ({ transactionId, tx }) => {
      calls.abort++;
      const r = tx.prepare('SELECT sku, qty FROM reservation WHERE tx = ?').get(transactionId) as
        | { sku: string; qty: number }
        | undefined;
      if (r) tx.prepare('UPDATE stock SET reserved = reserved - ? WHERE sku = ?').run(r.qty, r.sku);
      tx.prepare('DELETE FROM reservation WHERE tx = ?').run(transactionId);
    },
    ...options,
  });
  const server = http.createServer(nodeHandler(participant));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const row = (sku: string) => db.prepare('SELECT * FROM stock WHERE sku = ?').get(sku) as Record<string, number>;
  return Object.assign(service, {
    url: `http://127.0.0.1:${port}/tx`,
    db,
    participant,
    calls,
    available: (sku: string) => row(sku).available as number,
    reserved: (sku: string) => row(sku).reserved as number,
    record: (transactionId: string, name: string) =>
      db
        .prepare('SELECT * FROM commitd_participant WHERE transaction_id = ? AND participant = ?')
        .get(transactionId, name) as Record<string, unknown> | undefined,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await participant.close();
      db.close();
    },
  }) as StockService;
}

/** POSTs a raw protocol message to a participant, as commitd would. */
export async function send(
  url: string,
  action: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any }> {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(`${url}/${action}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: raw,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
