// What the kit's callbacks get and what it keeps: commit and abort receive
// the payload prepare got (kept with the prepared record, also across a
// restart of the service, and dropped when the transaction finishes), on the
// SQLite store and on PostgreSQL (the running server, a schema of this run's
// own); tables made before payloads were kept gain the column without losing
// a row; and a callback that throws is written to stderr unless the service
// wired `hooks.onError`.

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import t from 'tap';
import {
  createParticipant,
  type FinishContext,
  type KitRequest,
  type ParticipantOptions,
} from '../../src/kit/participant.js';
import { PgParticipantStore } from '../../src/kit/pg-store.js';
import { SqliteParticipantStore } from '../../src/kit/sqlite-store.js';
import type { ParticipantStore } from '../../src/kit/store.js';
import { tempDir } from '../support/harness.js';

interface Order {
  readonly sku: string;
  readonly qty: number;
}

function message(action: string, transactionId: string, payload?: unknown): KitRequest {
  return {
    method: 'POST',
    path: `/tx/${action}`,
    headers: { 'x-commitd-transaction': transactionId },
    body: Buffer.from(JSON.stringify({ transactionId, participant: 'orders', payload })),
  };
}

/** A participant that votes no for qty 0 and remembers what commit and abort were handed. */
function recordingParticipant<Tx>(store: ParticipantStore<Tx>, extra: Partial<ParticipantOptions<Tx, Order>> = {}) {
  const finished: { action: string; transactionId: string; payload: Order | null }[] = [];
  const keep = (action: string) => (context: FinishContext<Tx, Order>) => {
    finished.push({ action, transactionId: context.transactionId, payload: context.payload });
  };
  const participant = createParticipant({
    store,
    backgroundIntervalMs: 0,
    async prepare({ payload }: { payload: Order }) {
      return payload.qty > 0 ? 'yes' : { vote: 'no', reason: 'nothing ordered' };
    },
    commit: keep('commit'),
    abort: keep('abort'),
    ...extra,
  });
  return { participant, finished };
}

// Frozen: the table exactly as the kit created it before it kept payloads
// (the store's current DDL differs by the payload column), so it repeats
// the store's columns on purpose.
const OLD_SQLITE_TABLE = `CREATE TABLE commitd_participant (
  transaction_id TEXT NOT NULL,
  participant TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted', 'read-only')),
  vote TEXT CHECK (vote IN ('yes', 'no', 'read-only')),
  reason TEXT,
  prepared_at_ms INTEGER,
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (transaction_id, participant)
) WITHOUT ROWID`;

t.test('SQLite: commit and abort get the prepare payload; kept while prepared, across a restart', async (t) => {
  const file = path.join(tempDir('commitd-kit-payload-'), 'orders.db');
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  let db = new Database(file);
  let kit = recordingParticipant(new SqliteParticipantStore(db));
  const stored = (id: string) =>
    (db.prepare('SELECT state, payload FROM commitd_participant WHERE transaction_id = ?').get(id) as {
      state: string;
      payload: string | null;
    }) ?? null;

  t.equal((await kit.participant.handle(message('prepare', 'tx_1', { sku: 'teapot', qty: 2 }))).status, 200);
  t.equal((await kit.participant.handle(message('prepare', 'tx_2', { sku: 'cup', qty: 1 }))).status, 200);
  t.same(stored('tx_1'), { state: 'prepared', payload: '{"sku":"teapot","qty":2}' }, 'kept with the prepared record');

  // The service restarts between prepare and the decision.
  await kit.participant.close();
  db.close();
  db = new Database(file);
  kit = recordingParticipant(new SqliteParticipantStore(db));
  t.equal((await kit.participant.handle(message('commit', 'tx_1'))).status, 200);
  t.equal((await kit.participant.handle(message('abort', 'tx_2'))).status, 200);
  t.same(kit.finished, [
    { action: 'commit', transactionId: 'tx_1', payload: { sku: 'teapot', qty: 2 } },
    { action: 'abort', transactionId: 'tx_2', payload: { sku: 'cup', qty: 1 } },
  ]);
  t.same(stored('tx_1'), { state: 'committed', payload: null }, 'dropped once committed');
  t.same(stored('tx_2'), { state: 'aborted', payload: null }, 'dropped once aborted');

  const no = await kit.participant.handle(message('prepare', 'tx_3', { sku: 'cup', qty: 0 }));
  t.same(JSON.parse(no.body), { vote: 'no', reason: 'nothing ordered' });
  t.same(stored('tx_3'), { state: 'aborted', payload: null }, 'a no vote keeps no payload');
  await kit.participant.close();
  db.close();
});

t.test('SQLite: a table from before payloads gains the column and keeps its rows', async (t) => {
  const dir = tempDir('commitd-kit-migrate-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const db = new Database(path.join(dir, 'orders.db'));
  db.exec(OLD_SQLITE_TABLE);
  const insert = db.prepare('INSERT INTO commitd_participant VALUES (?, ?, ?, ?, NULL, ?, ?)');
  insert.run('tx_old_prepared', 'orders', 'prepared', 'yes', 1000, 1000);
  insert.run('tx_old_done', 'orders', 'committed', 'yes', 1000, 2000);

  const kit = recordingParticipant(new SqliteParticipantStore(db));
  const columns = (db.prepare('PRAGMA table_info(commitd_participant)').all() as { name: string }[]).map((c) => c.name);
  t.ok(columns.includes('payload'), `payload column added (${columns.join(', ')})`);
  t.equal((db.prepare('SELECT count(*) AS n FROM commitd_participant').get() as { n: number }).n, 2, 'rows kept');
  // Opening again (a second start) finds the column there.
  t.doesNotThrow(() => new SqliteParticipantStore(db));

  t.equal((await kit.participant.handle(message('commit', 'tx_old_prepared'))).status, 200);
  t.same(kit.finished, [{ action: 'commit', transactionId: 'tx_old_prepared', payload: null }], 'older record: null');
  const repeat = await kit.participant.handle(message('commit', 'tx_old_done'));
  t.equal(repeat.status, 200, 'an older finished record still answers its repeat');
  t.equal(kit.finished.length, 1);
  await kit.participant.close();
  db.close();
});

t.test('PostgreSQL: payload kept while prepared, handed to commit and abort; an old table migrated', async (t) => {
  const connection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
  const schema = `kit_payload_${process.pid}_${Date.now()}`;
  const pool = new pg.Pool({ ...connection, max: 3 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  t.teardown(async () => {
    await pool.query(`DROP SCHEMA ${schema} CASCADE`);
    await pool.end();
  });
  const table = `${schema}.commitd_participant`;
  // The table as the kit made it before it kept payloads, with a prepared row.
  await pool.query(
    OLD_SQLITE_TABLE.replace('commitd_participant', table)
      .replace(/INTEGER/g, 'BIGINT')
      .replace(' WITHOUT ROWID', ''),
  );
  await pool.query(`INSERT INTO ${table} VALUES ('tx_old', 'orders', 'prepared', 'yes', NULL, 1000, 1000)`);

  const kit = recordingParticipant(await PgParticipantStore.open(pool, { table }));
  const stored = async (id: string) =>
    (await pool.query(`SELECT state, payload FROM ${table} WHERE transaction_id = $1`, [id])).rows[0] ?? null;
  t.same(await stored('tx_old'), { state: 'prepared', payload: null }, 'column added, row kept');
  await PgParticipantStore.open(pool, { table }); // a second start finds it there

  t.equal((await kit.participant.handle(message('prepare', 'tx_1', { sku: 'teapot', qty: 2 }))).status, 200);
  t.equal((await kit.participant.handle(message('prepare', 'tx_2', { sku: 'cup', qty: 1 }))).status, 200);
  t.same(await stored('tx_1'), { state: 'prepared', payload: '{"sku":"teapot","qty":2}' });
  t.equal((await kit.participant.handle(message('commit', 'tx_1'))).status, 200);
  t.equal((await kit.participant.handle(message('abort', 'tx_2'))).status, 200);
  t.equal((await kit.participant.handle(message('abort', 'tx_old'))).status, 200);
  t.same(kit.finished, [
    { action: 'commit', transactionId: 'tx_1', payload: { sku: 'teapot', qty: 2 } },
    { action: 'abort', transactionId: 'tx_2', payload: { sku: 'cup', qty: 1 } },
    { action: 'abort', transactionId: 'tx_old', payload: null },
  ]);
  t.same(await stored('tx_1'), { state: 'committed', payload: null });
  t.same(await stored('tx_2'), { state: 'aborted', payload: null });
  await kit.participant.close();
});

t.test('a callback that throws goes to stderr by default; with hooks.onError only the hook hears it', async (t) => {
  const db = new Database(':memory:');
  t.teardown(() => db.close());
  const failing = { prepare: () => Promise.reject(new Error('the stock table is locked')) };

  const logged = t.capture(console, 'error');
  const quiet = recordingParticipant(new SqliteParticipantStore(db), failing);
  const answer = await quiet.participant.handle(message('prepare', 'tx_fail_1', { sku: 'teapot', qty: 1 }));
  t.equal(answer.status, 500);
  const lines = logged().map((call) => call.args.map(String).join(' '));
  t.equal(lines.length, 1, lines.join('\n'));
  t.match(lines[0], /prepare of tx_fail_1 failed/);
  t.match(lines[0], /the stock table is locked/);

  const heard: unknown[] = [];
  const hooked = recordingParticipant(new SqliteParticipantStore(db, { table: 'hooked' }), {
    ...failing,
    hooks: { onError: (error) => heard.push(error) },
  });
  const again = t.capture(console, 'error');
  t.equal((await hooked.participant.handle(message('prepare', 'tx_fail_2', { sku: 'teapot', qty: 1 }))).status, 500);
  t.equal(heard.length, 1, 'the hook heard it');
  t.same(again(), [], 'nothing written to stderr');
});
