// The kit on PostgreSQL (the running server on 127.0.0.1:5432, database
// `test`), in a schema of its own created and dropped by this run: the
// record and the service change commit together or not at all, repeats skip
// the service, and two kit instances on separate pools (as two processes
// would be) that receive the same prepare at once run the service once.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import t from 'tap';
import { nodeHandler } from '../../src/kit/node-handler.js';
import { createParticipant, type Participant } from '../../src/kit/participant.js';
import { PgParticipantStore } from '../../src/kit/pg-store.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startService } from '../support/service.js';
import { send } from './stock.js';

const connection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const schema = `kit_${process.pid}_${Date.now()}`;
const admin = new pg.Pool({ ...connection, max: 2 });
await admin.query(`CREATE SCHEMA ${schema}`);
await admin.query(
  `CREATE TABLE ${schema}.account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, held INTEGER NOT NULL)`,
);
await admin.query(`CREATE TABLE ${schema}.hold (tx TEXT PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL)`);
await admin.query(`INSERT INTO ${schema}.account VALUES ('alice', 100, 0)`);
t.teardown(async () => {
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();
});

interface Payments {
  readonly url: string;
  readonly participant: Participant<pg.PoolClient>;
  readonly calls: { prepare: number; commit: number; abort: number };
  fail: boolean;
  close(): Promise<void>;
}

async function startPayments(): Promise<Payments> {
  const pool = new pg.Pool({ ...connection, max: 4 });
  const calls = { prepare: 0, commit: 0, abort: 0 };
  const state = { fail: false };
  const participant = createParticipant<pg.PoolClient>({
    store: await PgParticipantStore.open(pool, { table: `${schema}.commitd_participant` }),
    backgroundIntervalMs: 0,
    prepare: async ({ transactionId, payload, tx }) => {
      calls.prepare++;
      const { amount } = payload as { amount: number };
      const res = await tx.query(
        `UPDATE ${schema}.account SET held = held + $1 WHERE id = 'alice' AND balance - held >= $1`,
        [amount],
      );
      if (res.rowCount === 0) return { vote: 'no', reason: 'insufficient funds' };
      await tx.query(`INSERT INTO ${schema}.hold VALUES ($1, 'alice', $2)`, [transactionId, amount]);
      // Slow enough that a concurrent duplicate really overlaps.
      await new Promise((r) => setTimeout(r, 50));
      if (state.fail) throw new Error('failed after writing');
      return 'yes';
    },
    commit: async ({ transactionId, tx }) => {
      calls.commit++;
      await tx.query(
        `UPDATE ${schema}.account a SET balance = balance - h.amount, held = held - h.amount
         FROM ${schema}.hold h WHERE h.tx = $1 AND a.id = h.account`,
        [transactionId],
      );
      await tx.query(`DELETE FROM ${schema}.hold WHERE tx = $1`, [transactionId]);
    },
    abort: async ({ transactionId, tx }) => {
      calls.abort++;
      await tx.query(
        `UPDATE ${schema}.account a SET held = held - h.amount FROM ${schema}.hold h WHERE h.tx = $1 AND a.id = h.account`,
        [transactionId],
      );
      await tx.query(`DELETE FROM ${schema}.hold WHERE tx = $1`, [transactionId]);
    },
  });
  const server = http.createServer(nodeHandler(participant));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/tx`,
    participant,
    calls,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await participant.close();
      await pool.end();
    },
  });
}

const account = async () =>
  (await admin.query(`SELECT balance, held FROM ${schema}.account WHERE id = 'alice'`)).rows[0];
const record = async (tx: string) =>
  (await admin.query(`SELECT state, vote FROM ${schema}.commitd_participant WHERE transaction_id = $1`, [tx])).rows;
const holds = async () => Number((await admin.query(`SELECT count(*) AS n FROM ${schema}.hold`)).rows[0].n);

const a = await startPayments();
const b = await startPayments();
t.teardown(async () => {
  await a.close();
  await b.close();
});

t.test('prepare, repeat, commit: the record and the change commit together', async (t) => {
  const m = { transactionId: 'tx_pg_1', participant: 'pay', payload: { amount: 10 } };
  t.same((await send(a.url, 'prepare', m)).body, { vote: 'yes' });
  t.same((await send(a.url, 'prepare', m)).body, { vote: 'yes' });
  t.same(await account(), { balance: 100, held: 10 });
  t.same(await record('tx_pg_1'), [{ state: 'prepared', vote: 'yes' }]);
  t.equal((await send(a.url, 'commit', m)).status, 200);
  t.equal((await send(a.url, 'commit', m)).status, 200);
  t.same(await account(), { balance: 90, held: 0 });
  t.same(await record('tx_pg_1'), [{ state: 'committed', vote: 'yes' }]);
  t.same(a.calls, { prepare: 1, commit: 1, abort: 0 });
});

t.test('a failure inside prepare leaves no record and no change', async (t) => {
  a.fail = true;
  t.teardown(() => {
    a.fail = false;
  });
  const res = await send(a.url, 'prepare', { transactionId: 'tx_pg_fail', participant: 'pay', payload: { amount: 5 } });
  t.equal(res.status, 500);
  t.equal(res.body.type, 'urn:commitd:problem:internal');
  t.same(await record('tx_pg_fail'), []);
  t.same(await account(), { balance: 90, held: 0 });
  t.equal(await holds(), 0);
});

t.test('a no vote rolls back; abort before prepare leaves a tombstone', async (t) => {
  const n = { transactionId: 'tx_pg_no', participant: 'pay', payload: { amount: 1000 } };
  t.same((await send(a.url, 'prepare', n)).body, { vote: 'no', reason: 'insufficient funds' });
  t.same(await record('tx_pg_no'), [{ state: 'aborted', vote: 'no' }]);
  const e = { transactionId: 'tx_pg_early', participant: 'pay', payload: { amount: 1 } };
  t.equal((await send(a.url, 'abort', e)).status, 200);
  t.match((await send(a.url, 'prepare', e)).body, { vote: 'no' });
  t.same(await record('tx_pg_early'), [{ state: 'aborted', vote: null }]);
  t.same(await account(), { balance: 90, held: 0 });
});

t.test('two instances on separate pools get the same prepare at once: the service runs once', async (t) => {
  const before = a.calls.prepare + b.calls.prepare;
  const m = { transactionId: 'tx_pg_dup', participant: 'pay', payload: { amount: 7 } };
  const answers = await Promise.all([send(a.url, 'prepare', m), send(b.url, 'prepare', m)]);
  t.same(
    answers.map((x) => x.body),
    [{ vote: 'yes' }, { vote: 'yes' }],
  );
  t.equal(a.calls.prepare + b.calls.prepare - before, 1);
  t.same(await account(), { balance: 90, held: 7 });
  await Promise.all([send(a.url, 'abort', m), send(b.url, 'abort', m)]);
  t.same(await account(), { balance: 90, held: 0 });
  t.equal(a.calls.abort + b.calls.abort, 1);
});

t.test('prepared() and purge() on PostgreSQL', async (t) => {
  await send(a.url, 'prepare', { transactionId: 'tx_pg_held', participant: 'pay', payload: { amount: 1 } });
  const store = await PgParticipantStore.open(admin, { table: `${schema}.commitd_participant` });
  t.same(
    (await store.prepared(10)).map((r) => r.transactionId),
    ['tx_pg_held'],
  );
  const purged = await store.purge(Date.now() + 1, 1000);
  t.equal(purged, 4, 'every finished record and tombstone, not the prepared one');
  t.same(await record('tx_pg_held'), [{ state: 'prepared', vote: 'yes' }]);
  await send(a.url, 'abort', { transactionId: 'tx_pg_held', participant: 'pay' });
});

t.test('a one-shot commit through a real commitd', async (t) => {
  const commitd = await startService(tempDir());
  t.teardown(() => commitd.kill('SIGTERM'));
  const res = await call(commitd.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'pay', url: a.url, payload: { amount: 25 } }],
    commit: true,
  });
  t.equal(res.status, 200);
  t.same(await account(), { balance: 65, held: 0 });
  t.same(await record(res.body.id), [{ state: 'committed', vote: 'yes' }]);
});
