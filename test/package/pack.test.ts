// commitd as a library: `npm pack` the package and install the tarball in a
// clean directory the way an app would (this Node's npm, no flag that hides
// anything). better-sqlite3 and fastify are optional peer dependencies, so
// an app that uses the client and the kit with PostgreSQL installs neither:
// nothing is compiled, npm prints no warning at all, and every package
// installed declares every Node version commitd supports. There the client,
// the kit's node:http handler and its pg store run a transaction through a
// real commitd, the shipped declarations type-check a consumer, and the
// service itself, started from the package, names the peers it lacks. Then
// the app adds better-sqlite3 and fastify (the one install that compiles,
// about a minute, done once): still no warning, and the sqlite store and the
// fastify plugin run a transaction through the service started from the
// package. The `commitd` command works without the service's peers too.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import semver from 'semver';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { packTarball } from '../support/pack.js';
import { FAST_SETTINGS, spawnService, startService } from '../support/service.js';
import { typeCheckStrict } from '../support/typescript.js';

// Installing better-sqlite3 compiles it when no prebuilt binary can be
// downloaded: minutes on a busy machine.
t.setTimeout(30 * 60_000);
const INSTALL_TIMEOUT_MS = 5 * 60_000;
const COMPILING_INSTALL_TIMEOUT_MS = 20 * 60_000;
const PROBE_TIMEOUT_MS = 60_000;

const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'));
const supportedNode: string = manifest.engines.node;

function npm(args: string[], cwd: string, timeoutMs = INSTALL_TIMEOUT_MS): { output: string; status: number | null } {
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
  return { output: `${r.stdout}${r.stderr}${r.error ? `\n${r.error.message}` : ''}`, status: r.status };
}

/** npm's warnings (engine, install scripts, deprecations, peers): an app's install must print none. */
function warnings(output: string): string[] {
  return output.split('\n').filter((line) => /^npm (warn|WARN)|EBADENGINE|Unsupported engine/.test(line));
}

/** Every package under dir/node_modules (nested ones too) whose engines.node fails `accepts`. */
function engineGaps(dir: string, accepts: (range: string) => boolean): string[] {
  const gaps: string[] = [];
  const visit = (modules: string) => {
    if (!fs.existsSync(modules)) return;
    for (const entry of fs.readdirSync(modules)) {
      if (entry.startsWith('.')) continue;
      const packages = entry.startsWith('@')
        ? fs.readdirSync(path.join(modules, entry)).map((name) => path.join(modules, entry, name))
        : [path.join(modules, entry)];
      for (const pkgDir of packages) {
        const file = path.join(pkgDir, 'package.json');
        if (!fs.existsSync(file)) continue;
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
        const range: unknown = pkg.engines?.node;
        if (typeof range === 'string' && !accepts(range)) gaps.push(`${pkg.name}@${pkg.version} (node ${range})`);
        visit(path.join(pkgDir, 'node_modules'));
      }
    }
  };
  visit(path.join(dir, 'node_modules'));
  return gaps;
}

function installed(app: string, name: string): boolean {
  return fs.existsSync(path.join(app, 'node_modules', name, 'package.json'));
}

/** Runs an ES module written into the app's directory (so `commitd/...` resolves there); its last line is JSON. */
function probe(app: string, name: string, source: string, args: string[]): unknown {
  fs.writeFileSync(path.join(app, name), source);
  const out = execFileSync(process.execPath, [name, ...args], {
    cwd: app,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: PROBE_TIMEOUT_MS,
  });
  return JSON.parse(out.trim().split('\n').at(-1) ?? 'null');
}

// The app of the installs below, and a schema of its own in the shared PostgreSQL.
const app = tempDir('commitd-consumer-');
t.teardown(() => fs.rmSync(app, { recursive: true, force: true }));
fs.writeFileSync(
  path.join(app, 'package.json'),
  // allowScripts: npm 11's approval of install scripts; better-sqlite3 (added
  // in the second install) compiles in its own.
  JSON.stringify({ name: 'consumer', private: true, type: 'module', allowScripts: { 'better-sqlite3': true } }),
);
const connection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
const schema = `pack_${process.pid}_${Date.now()}`;
const admin = new pg.Pool({ ...connection, max: 1 });
await admin.query(`CREATE SCHEMA ${schema}`);
t.teardown(async () => {
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  await admin.end();
});

const { tarball, files, remove } = packTarball();
t.teardown(remove);

t.test('the tarball holds what runs, and nothing else', async (t) => {
  for (const f of [
    'package.json',
    'bin/commitd.js',
    'config/default.yaml',
    'dist/src/main.js',
    'dist/src/kit/index.js',
    'dist/src/kit/index.d.ts',
    'dist/src/client/index.js',
    'dist/src/client/index.d.ts',
    // The operator console, read by commitd at start.
    'dist/src/console/index.html',
    'dist/src/console/console.css',
    'dist/src/console/app.js',
  ]) {
    t.ok(files.includes(f), f);
  }
  t.same(
    files.filter((f) => /^(test|bench|src|ops)\/|\.ts$(?<!\.d\.ts)|\.map$/.test(f)),
    [],
    'no sources, tests, benchmarks, scripts or source maps',
  );
});

t.test('the manifest: what the service alone needs are optional peers', async (t) => {
  for (const peer of ['better-sqlite3', 'fastify', 'pg']) {
    t.equal(manifest.dependencies[peer], undefined, `${peer} is not a dependency`);
    t.ok(manifest.peerDependencies[peer], `${peer} is a peer dependency`);
    t.equal(manifest.peerDependenciesMeta[peer]?.optional, true, `${peer} is optional`);
    t.ok(manifest.devDependencies[peer], `${peer} is a dev dependency: this repository's npm ci installs it`);
  }
  // An install script of the package itself: npm lists `prepare` of a
  // package installed from a tarball among the scripts to approve.
  t.same(
    Object.keys(manifest.scripts).filter((s) => /^(pre|post)?(install|prepare)$/.test(s)),
    [],
    'no install scripts',
  );
});

t.test('the client and the kit with PostgreSQL: no better-sqlite3, no fastify, no warning', async (t) => {
  const install = npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, 'pg'], app);
  t.equal(install.status, 0, install.output);
  t.same(warnings(install.output), [], 'npm printed no warning');
  t.notOk(installed(app, 'better-sqlite3'), 'better-sqlite3 is not installed (nor compiled)');
  t.notOk(installed(app, 'fastify'), 'fastify is not installed');
  t.same(
    engineGaps(app, (range) => semver.subset(supportedNode, range)),
    [],
    `every package installed runs on every Node commitd supports (${supportedNode})`,
  );
  const cookie = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/cookie/package.json'), 'utf8'));
  t.match(cookie.version, /^1\./, 'cookie 1.x (cookie 2 needs Node 22)');

  const commitd = await startService(tempDir('commitd-pack-service-'));
  t.teardown(() => commitd.kill());
  const result = probe(
    app,
    'pg-probe.mjs',
    `import http from 'node:http';
     import pg from 'pg';
     import { CommitdClient, TransactionAbortedError } from 'commitd/client';
     import { createParticipant, nodeHandler } from 'commitd/participant';
     import { PgParticipantStore } from 'commitd/participant/pg';
     const [commitdUrl, schema] = process.argv.slice(2);
     const pool = new pg.Pool({ ...${JSON.stringify(connection)}, max: 2 });
     await pool.query(\`CREATE TABLE \${schema}.payment (tx TEXT PRIMARY KEY, amount INTEGER NOT NULL, status TEXT NOT NULL)\`);
     const participant = createParticipant({
       store: await PgParticipantStore.open(pool, { table: \`\${schema}.commitd_participant\` }),
       backgroundIntervalMs: 0,
       async prepare({ transactionId, payload, tx }) {
         if (payload.amount > 100) return { vote: 'no', reason: 'over the limit' };
         await tx.query(\`INSERT INTO \${schema}.payment VALUES ($1, $2, 'held')\`, [transactionId, payload.amount]);
         return 'yes';
       },
       async commit({ transactionId, tx }) {
         await tx.query(\`UPDATE \${schema}.payment SET status = 'captured' WHERE tx = $1\`, [transactionId]);
       },
       async abort({ transactionId, tx }) {
         await tx.query(\`UPDATE \${schema}.payment SET status = 'released' WHERE tx = $1\`, [transactionId]);
       },
     });
     const server = http.createServer(nodeHandler(participant));
     await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
     const url = \`http://127.0.0.1:\${server.address().port}/tx\`;
     const client = new CommitdClient({ url: commitdUrl, timeoutMs: 20000 });
     const committed = await client.run({ participants: [{ name: 'payments', url, payload: { amount: 15 } }] });
     let declined = null;
     try {
       await client.run({ participants: [{ name: 'payments', url, payload: { amount: 500 } }] });
     } catch (error) {
       if (!(error instanceof TransactionAbortedError)) throw error;
       declined = error.transaction.participants[0].reason;
     }
     const payments = await pool.query(\`SELECT amount, status FROM \${schema}.payment\`);
     const records = await pool.query(\`SELECT state, vote FROM \${schema}.commitd_participant ORDER BY state\`);
     server.close();
     await pool.end();
     console.log(JSON.stringify({ state: committed.state, declined, payments: payments.rows, records: records.rows }));`,
    [commitd.url, schema],
  );
  t.same(result, {
    state: 'committed',
    declined: 'over the limit',
    payments: [{ amount: 15, status: 'captured' }],
    records: [
      { state: 'aborted', vote: 'no' },
      { state: 'committed', vote: 'yes' },
    ],
  });
});

t.test('the shipped declarations type-check a consumer', async (t) => {
  // NodeNext resolution through `exports`.
  fs.writeFileSync(
    path.join(app, 'consumer.ts'),
    `import { CommitdClient, type Transaction } from 'commitd/client';
     import { createParticipant, type PrepareContext } from 'commitd/participant';
     import type { ParticipantStore } from 'commitd/participant';
     declare const store: ParticipantStore<{ query(sql: string): void }>;
     const p = createParticipant({ store, prepare: (c: PrepareContext<{ query(sql: string): void }>) => { c.tx.query('x'); return 'yes' as const; } });
     const c = new CommitdClient({ url: 'http://127.0.0.1:1' });
     export const used: [typeof p, Promise<Transaction>] = [p, c.get('tx')];
     // @ts-expect-error only the entry points in \`exports\` are public
     export type { Coordinator } from 'commitd/dist/src/coordinator/coordinator.js';`,
  );
  const tsc = typeCheckStrict(app, ['consumer.ts']);
  t.equal(tsc.status, 0, `the consumer type-checks: ${tsc.output}`);
});

const installedMain = path.join(app, 'node_modules', 'commitd', 'dist', 'src', 'main.js');
const installedBin = path.join(app, 'node_modules', '.bin', 'commitd');

t.test("the commitd command from the package, without the service's peers", async (t) => {
  t.equal(execFileSync(installedBin, ['--version'], { cwd: app, encoding: 'utf8' }), `${manifest.version}\n`);
  const down = spawnSync(installedBin, ['list', '--url', 'http://127.0.0.1:1'], { cwd: app, encoding: 'utf8' });
  t.equal(down.status, 6, `commitd list reaches for the service and finds none: ${down.stderr}`);
  t.match(down.stderr, /ECONNREFUSED/);
  const serve = spawnService({
    dataDir: tempDir('commitd-pack-data-'),
    script: installedBin,
    args: ['serve'],
    inheritCommitdEnv: false,
    as: { cwd: app },
  });
  t.equal((await serve.exited).code, 1, serve.output());
  t.match(serve.output(), /the service needs fastify, better-sqlite3, not installed/, 'serve says what to install');
});

t.test('the service started from the package without its peers says what to install', async (t) => {
  const run = spawnService({
    dataDir: tempDir('commitd-pack-data-'),
    script: installedMain,
    inheritCommitdEnv: false,
    as: { cwd: app },
  });
  const { code } = await run.exited;
  t.equal(code, 1, run.output());
  t.match(run.output(), /the service needs fastify, better-sqlite3, not installed/);
  t.match(
    run.output(),
    `npm install '${`fastify@${manifest.devDependencies.fastify}`}' '${`better-sqlite3@${manifest.devDependencies['better-sqlite3']}`}'`,
  );
});

t.test('with better-sqlite3 and fastify added: the sqlite store, the fastify plugin, the service', async (t) => {
  const install = npm(
    ['install', '--prefer-offline', '--no-audit', '--no-fund', 'better-sqlite3', 'fastify'],
    app,
    COMPILING_INSTALL_TIMEOUT_MS,
  );
  t.equal(install.status, 0, install.output);
  t.same(warnings(install.output), [], 'npm printed no warning');
  const lowest = semver.minVersion(supportedNode)?.version ?? supportedNode;
  t.same(
    engineGaps(app, (range) => semver.satisfies(lowest, range) && semver.satisfies(process.version, range)),
    [],
    `every package installed runs on Node ${lowest}, the oldest commitd supports, and on this one`,
  );
  const lightMyRequest = JSON.parse(
    fs.readFileSync(path.join(app, 'node_modules/light-my-request/package.json'), 'utf8'),
  );
  t.equal(fs.existsSync(path.join(app, 'node_modules/fastify/node_modules/light-my-request')), false);
  t.match(lightMyRequest.version, /^6\.6\./, "fastify shares commitd's light-my-request 6.6 (cookie 1)");

  // The service, from the package, now that its peers are there.
  const service = spawnService({
    dataDir: tempDir('commitd-pack-data-'),
    script: installedMain,
    env: FAST_SETTINGS,
    inheritCommitdEnv: false,
    as: { cwd: app },
  });
  t.teardown(() => service.child.kill('SIGKILL'));
  const commitdUrl = await service.ready;
  const result = probe(
    app,
    'sqlite-fastify-probe.mjs',
    `import Database from 'better-sqlite3';
     import Fastify from 'fastify';
     import { CommitdClient } from 'commitd/client';
     import { createParticipant } from 'commitd/participant';
     import { participantPlugin } from 'commitd/participant/fastify';
     import { SqliteParticipantStore } from 'commitd/participant/sqlite';
     const [commitdUrl] = process.argv.slice(2);
     const db = new Database(':memory:');
     db.exec("CREATE TABLE orders (tx TEXT PRIMARY KEY, status TEXT NOT NULL)");
     const participant = createParticipant({
       store: new SqliteParticipantStore(db),
       backgroundIntervalMs: 0,
       prepare({ transactionId, tx }) {
         tx.prepare("INSERT INTO orders VALUES (?, 'pending')").run(transactionId);
         return 'yes';
       },
       commit({ transactionId, tx }) {
         tx.prepare("UPDATE orders SET status = 'confirmed' WHERE tx = ?").run(transactionId);
       },
       abort({ transactionId, tx }) {
         tx.prepare("UPDATE orders SET status = 'cancelled' WHERE tx = ?").run(transactionId);
       },
     });
     const server = Fastify();
     await server.register(participantPlugin, { prefix: '/tx', participant });
     const address = await server.listen({ host: '127.0.0.1', port: 0 });
     const client = new CommitdClient({ url: commitdUrl, timeoutMs: 20000 });
     const tx = await client.run({ participants: [{ name: 'orders', url: \`\${address}/tx\` }] });
     const orders = db.prepare('SELECT status FROM orders').all();
     const records = db.prepare('SELECT state, vote FROM commitd_participant').all();
     await server.close();
     console.log(JSON.stringify({ state: tx.state, orders, records }));`,
    [commitdUrl],
  );
  t.same(result, {
    state: 'committed',
    orders: [{ status: 'confirmed' }],
    records: [{ state: 'committed', vote: 'yes' }],
  });
  service.child.kill('SIGTERM');
  t.equal((await service.exited).code, 0, 'the service stops cleanly');
});
