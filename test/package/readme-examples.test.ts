// The README's examples as a new user meets them: taken from README.md by
// their markers (`<!-- example: NAME … -->` before a ```ts block), not
// copied, compiled with `strict` on in an empty TypeScript project that has
// the packed tarball, and run: the kit's orders service on SQLite, the
// client committing and aborting through it, and a database participant
// begun through the client, all against the service started from the
// package (on a private PostgreSQL for the database participant).
//
// The tarball is `npm pack`ed here and unpacked into the project's
// node_modules/commitd, which is what `npm install <tarball>` does with it;
// its dependencies are linked from this repository's node_modules instead of
// being installed, so nothing is downloaded or compiled (better-sqlite3
// compiles for a minute). test/package/pack.test.ts does the real
// `npm install` of the tarball.

import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { packTarball } from '../support/pack.js';
import { freePort, privateCluster } from '../support/postgres-cluster.js';
import { FAST_SETTINGS, spawnService } from '../support/service.js';
import { typeCheckStrict } from '../support/typescript.js';

const readme = fs.readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8');
const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'));
const RUN_TIMEOUT_MS = 60_000;

/** The ```ts block right after `<!-- example: name … -->`. */
function example(name: string): string {
  const match = new RegExp(`<!-- example: ${name}\\b[^>]*-->\\n\`\`\`ts\\n([\\s\\S]*?)\\n\`\`\`\\n`).exec(readme);
  if (match?.[1] === undefined) throw new Error(`README.md has no example marked ${name}`);
  return `${match[1]}\n`;
}

if (!fs.existsSync(path.join(PACKAGE_ROOT, 'dist', 'src', 'main.js'))) {
  t.plan(0, 'skipped: no tarball can be built, dist/ is missing (npm test builds it first; run npm run build)');
  process.exit(0);
}
const getCluster = privateCluster(t);
const { tarball, remove } = packTarball();
t.teardown(remove);

// The empty project, with the tarball in node_modules/commitd.
const app = tempDir('commitd-readme-app-');
t.teardown(() => fs.rmSync(app, { recursive: true, force: true }));
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'shop', private: true, type: 'module' }));
const modules = path.join(app, 'node_modules');
fs.mkdirSync(modules);
execFileSync('tar', ['-xzf', tarball, '-C', modules]);
fs.renameSync(path.join(modules, 'package'), path.join(modules, 'commitd'));
// commitd's dependencies, the peers the examples and the service use, and
// the type declarations a TypeScript user installs with them.
for (const name of [
  ...Object.keys(manifest.dependencies),
  'better-sqlite3',
  'fastify',
  'pg',
  '@types/node',
  '@types/better-sqlite3',
  '@types/pg',
]) {
  fs.mkdirSync(path.dirname(path.join(modules, name)), { recursive: true });
  fs.symlinkSync(path.join(PACKAGE_ROOT, 'node_modules', name), path.join(modules, name), 'dir');
}

const sources = { kit: 'orders.ts', client: 'checkout.ts', database: 'ledger.ts' } as const;
for (const [name, file] of Object.entries(sources)) fs.writeFileSync(path.join(app, file), example(name));

function run(file: string, env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [path.join(app, 'out', file)],
      { cwd: app, env: { ...process.env, ...env }, timeout: RUN_TIMEOUT_MS },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, output: `${stdout}${stderr}` }),
    );
  });
}

async function listening(port: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => resolve(socket.end() !== null));
      socket.once('error', () => resolve(false));
    });
    if (open) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

t.test("the README's kit, client and database examples compile with strict on", async (t) => {
  const tsc = typeCheckStrict(app, Object.values(sources), 'out');
  t.equal(tsc.status, 0, tsc.output);
});

t.test('and run: the kit service, the client through it, a database participant through the client', async (t) => {
  const cluster = getCluster();
  await cluster.createDatabase('ledger');
  await cluster.query('CREATE TABLE ledger (tx TEXT PRIMARY KEY, amount INTEGER NOT NULL)', [], 'ledger');

  const service = spawnService({
    dataDir: tempDir('commitd-readme-data-'),
    script: path.join(modules, 'commitd', 'bin', 'commitd.js'),
    args: ['serve'],
    env: { ...FAST_SETTINGS, COMMITD_DATABASES: `ledger-db=${cluster.url('ledger')}` },
    inheritCommitdEnv: false,
    as: { cwd: app },
  });
  t.teardown(() => service.child.kill('SIGKILL'));
  const commitdUrl = await service.ready;

  const port = await freePort();
  const orders = spawn(process.execPath, [path.join(app, 'out', 'orders.js')], {
    cwd: app,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let ordersOutput = '';
  orders.stdout.setEncoding('utf8').on('data', (chunk) => (ordersOutput += chunk));
  orders.stderr.setEncoding('utf8').on('data', (chunk) => (ordersOutput += chunk));
  t.teardown(() => orders.kill('SIGKILL'));
  t.ok(await listening(port, 20_000), `the orders service listens: ${ordersOutput}`);

  const checkout = await run('checkout.js', { COMMITD_URL: commitdUrl, ORDERS_URL: `http://127.0.0.1:${port}/tx` });
  t.equal(checkout.code, 0, checkout.output);
  t.same(checkout.output.trim().split('\n'), ['1 committed', '99 aborted: only 4 left']);
  const db = new Database(path.join(app, 'orders.db'), { readonly: true });
  t.teardown(() => db.close());
  t.same(db.prepare('SELECT available, reserved FROM stock').all(), [{ available: 4, reserved: 0 }]);
  t.same(db.prepare('SELECT sku, qty, status FROM orders').all(), [{ sku: 'teapot', qty: 1, status: 'confirmed' }]);
  t.same(db.prepare('SELECT state, vote, payload FROM commitd_participant ORDER BY state').all(), [
    { state: 'aborted', vote: 'no', payload: null },
    { state: 'committed', vote: 'yes', payload: null },
  ]);

  const ledger = await run('ledger.js', { COMMITD_URL: commitdUrl, LEDGER_URL: cluster.url('ledger') });
  t.equal(ledger.code, 0, ledger.output);
  t.equal(ledger.output.trim(), 'committed');
  t.same(await cluster.query('SELECT amount FROM ledger', [], 'ledger'), [{ amount: 1500 }], 'committed by commitd');
  t.same(await cluster.query('SELECT gid FROM pg_prepared_xacts'), [], 'nothing left prepared');
  t.equal(ordersOutput, '', 'the orders service printed nothing (no failure logged)');
});
