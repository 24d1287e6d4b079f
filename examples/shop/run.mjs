// The shop, end to end: commitd, the orders service and the payments
// service as three processes, each with its own state, and four scenarios:
// an order that commits, a declined payment that aborts the order, a kill -9
// of commitd between prepare and commit (the prepared state survives and the
// shop commits after the restart), a kill -9 of the payments service
// while prepared. Ends by checking that both services agree on every order.
// Usage: npm run example:shop  (builds, then runs this; exits 0 when consistent)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CommitdClient, TransactionAbortedError } from 'commitd/client';
import { startProcess } from '../support/processes.mjs';

const here = import.meta.dirname;
const root = path.resolve(here, '../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-shop-'));
const children = new Set();

const start = (name, file, env, ready) => startProcess(children, name, file, env, ready);

const startCommitd = (port = 0) =>
  start(
    'commitd',
    path.join(root, 'dist/src/main.js'),
    {
      COMMITD_PORT: String(port),
      COMMITD_HOST: '127.0.0.1',
      COMMITD_DATA_DIR: path.join(dir, 'commitd'),
      COMMITD_LOG_LEVEL: 'info',
      COMMITD_RETRY_DELAY_MS_MIN: '20',
      COMMITD_RETRY_DELAY_MS_MAX: '200',
    },
    (out) => /commitd ready/.test(out) && Number(/listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]),
  );
const startService = (name, port = 0) =>
  start(name, path.join(here, `${name}.mjs`), { PORT: String(port), DB: path.join(dir, `${name}.db`) }, (out) =>
    Number(new RegExp(`${name} listening (\\d+)`).exec(out)?.[1]),
  );

const say = (line) => console.log(line);
const ordersDb = () => new Database(path.join(dir, 'orders.db'), { readonly: true });
const paymentsDb = () => new Database(path.join(dir, 'payments.db'), { readonly: true });
const until = async (what, check, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const statusOf = (tx) => {
  const o = ordersDb();
  const p = paymentsDb();
  try {
    return [
      o.prepare('SELECT status FROM orders WHERE tx = ?').get(tx)?.status,
      p.prepare('SELECT status FROM payment WHERE tx = ?').get(tx)?.status,
    ];
  } finally {
    o.close();
    p.close();
  }
};

let commitd = await startCommitd();
const orders = await startService('orders');
let payments = await startService('payments');
const url = () => `http://127.0.0.1:${commitd.port}`;
let client = new CommitdClient({ url: url() });
const order = (customer, qty, amount) => [
  { name: 'orders', url: `http://127.0.0.1:${orders.port}/tx`, payload: { sku: 'teapot', qty } },
  { name: 'payments', url: `http://127.0.0.1:${payments.port}/tx`, payload: { customer, amount } },
];
const ids = [];

try {
  say('1. alice buys 2 teapots for 3000: both services prepare, commitd commits');
  const one = await client.run({ participants: order('alice', 2, 3000) });
  ids.push(one.id);
  say(`   ${one.id} ${one.state}; order and payment: ${statusOf(one.id).join(', ')}`);

  say('2. bob buys a teapot for 1500 with 500 on his card: payments votes no, the order is cancelled');
  try {
    await client.run({ participants: order('bob', 1, 1500) });
    throw new Error('bob should have been declined');
  } catch (error) {
    if (!(error instanceof TransactionAbortedError)) throw error;
    const id = error.transaction.id;
    ids.push(id);
    await until('the cancellation', () => statusOf(id)[0] === 'cancelled');
    say(`   ${id} aborted (${error.transaction.participants[1].reason}); order: ${statusOf(id)[0]}, no payment`);
  }

  say('3. kill -9 of commitd after both prepared, before the decision: the prepared state survives, the shop commits');
  const three = await client.begin({ participants: order('alice', 1, 1500), timeoutMs: 60_000 });
  ids.push(three.id);
  await client.prepare(three.id);
  say(`   prepared: ${statusOf(three.id).join(', ')}; kill -9 commitd`);
  await commitd.kill();
  commitd = await startCommitd(commitd.port);
  await client.close();
  client = new CommitdClient({ url: url() });
  say(`   restarted: ${(await client.get(three.id)).state}; commit`);
  await client.commit(three.id);
  say(`   ${(await client.get(three.id)).state}; order and payment: ${statusOf(three.id).join(', ')}`);

  say('4. kill -9 of payments while prepared; commitd commits, payments restarts, commitd finishes it');
  const four = await client.begin({ participants: order('alice', 1, 1500), timeoutMs: 60_000 });
  ids.push(four.id);
  await client.prepare(four.id);
  await payments.kill();
  const decided = await client.commit(four.id);
  say(`   commit decided while payments is down: ${decided.state}`);
  payments = await startService('payments', payments.port);
  await until('the commit to reach payments', () => statusOf(four.id).join() === 'confirmed,captured');
  say(`   payments back: order and payment: ${statusOf(four.id).join(', ')}`);

  // Both services agree on every order, and the books balance.
  const expected = { confirmed: 'captured', cancelled: 'released' };
  let consistent = true;
  for (const id of ids) {
    const [o, p] = statusOf(id);
    const tx = await client.get(id);
    const ok =
      (o === 'confirmed' && p === 'captured' && tx.outcome === 'commit') ||
      (o === 'cancelled' && (p === undefined || p === expected[o]) && tx.outcome === 'abort');
    if (!ok) consistent = false;
    say(`   ${id}: commitd ${tx.outcome}, order ${o}, payment ${p ?? 'none'}${ok ? '' : '  <-- INCONSISTENT'}`);
  }
  const o = ordersDb();
  const p = paymentsDb();
  const stock = o.prepare("SELECT available, reserved FROM stock WHERE sku = 'teapot'").get();
  const alice = p.prepare("SELECT balance, held FROM account WHERE customer = 'alice'").get();
  o.close();
  p.close();
  if (stock.available !== 1 || stock.reserved !== 0 || alice.balance !== 4000 || alice.held !== 0) consistent = false;
  say(
    `   teapots left ${stock.available} (reserved ${stock.reserved}); alice has ${alice.balance} (held ${alice.held})`,
  );
  say(consistent ? 'consistent' : 'INCONSISTENT');
  process.exitCode = consistent ? 0 : 1;
} finally {
  await client.close();
  for (const child of children) child.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
}
