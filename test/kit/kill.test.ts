// A kit-based service as a real process, SIGKILLed: while prepared (its
// restart on the same SQLite file is finished by commitd's resends), and in
// the middle of its prepare (its change and the kit's record are both gone).

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { waitUntil } from '../support/participant.js';
import { startService } from '../support/service.js';

const FIXTURE = path.join(import.meta.dirname, 'fixtures', 'stock-process.mjs');

interface Proc {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<void>;
}

async function startStock(db: string, port = 0, env: Record<string, string> = {}): Promise<Proc> {
  const child = spawn(process.execPath, [FIXTURE], {
    env: { ...process.env, DB: db, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  await waitUntil(() => /listening \d+/.test(out), 10_000, 'the stock service to listen');
  return { child, port: Number(/listening (\d+)/.exec(out)?.[1]), exited };
}

function inspect(db: string) {
  const d = new Database(db, { readonly: true });
  try {
    return {
      stock: d.prepare("SELECT available, reserved FROM stock WHERE sku = 'apple'").get(),
      reservations: (d.prepare('SELECT count(*) AS n FROM reservation').get() as { n: number }).n,
      records: d.prepare('SELECT transaction_id, state, vote FROM commitd_participant').all() as Array<{
        transaction_id: string;
        state: string;
        vote: string | null;
      }>,
    };
  } finally {
    d.close();
  }
}

const commitd = await startService(tempDir());
t.teardown(() => commitd.kill('SIGTERM'));

t.test('SIGKILL while prepared; restarted on the same file, commitd finishes the commit', async (t) => {
  const db = path.join(tempDir(), 'stock.db');
  const first = await startStock(db);
  const url = `http://127.0.0.1:${first.port}/tx`;
  const begun = await call(commitd.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'stock', url, payload: { sku: 'apple', qty: 3 } }],
    timeoutMs: 60_000,
  });
  const id = begun.body.id;
  t.equal((await call(commitd.url, 'POST', `/v1/transactions/${id}/prepare`)).body.state, 'prepared');
  first.child.kill('SIGKILL');
  await first.exited;
  t.same(inspect(db), {
    stock: { available: 10, reserved: 3 },
    reservations: 1,
    records: [{ transaction_id: id, state: 'prepared', vote: 'yes' }],
  });
  const commit = await call(commitd.url, 'POST', `/v1/transactions/${id}/commit`);
  t.equal(commit.status, 202, 'decided, the participant is down');
  const second = await startStock(db, first.port);
  t.teardown(() => second.child.kill('SIGKILL'));
  await waitUntil(() => inspect(db).records[0]?.state === 'committed', 15_000, 'the commit resend');
  t.same(inspect(db), {
    stock: { available: 7, reserved: 0 },
    reservations: 0,
    records: [{ transaction_id: id, state: 'committed', vote: 'yes' }],
  });
  const tx = await call(commitd.url, 'GET', `/v1/transactions/${id}`);
  t.equal(tx.body.outcome, 'commit');
});

t.test(
  'SIGKILL inside the service prepare: no change and no record; after restart only the abort tombstone',
  async (t) => {
    const db = path.join(tempDir(), 'stock.db');
    const crashing = await startStock(db, 0, { CRASH_IN_PREPARE: '1' });
    const url = `http://127.0.0.1:${crashing.port}/tx`;
    const res = await call(commitd.url, 'POST', '/v1/transactions', {
      participants: [{ name: 'stock', url, payload: { sku: 'apple', qty: 4 } }],
      commit: true,
    });
    await crashing.exited;
    t.equal(res.status, 409, 'the lost vote aborted the transaction');
    const id = res.body.transaction.id;
    t.same(inspect(db), { stock: { available: 10, reserved: 0 }, reservations: 0, records: [] });
    const restarted = await startStock(db, crashing.port);
    t.teardown(() => restarted.child.kill('SIGKILL'));
    await waitUntil(() => inspect(db).records.length === 1, 15_000, 'the abort resend');
    t.same(inspect(db), {
      stock: { available: 10, reserved: 0 },
      reservations: 0,
      records: [{ transaction_id: id, state: 'aborted', vote: null }],
    });
  },
);
