// commitd as a library: `npm pack` the package, install the tarball in a
// clean directory with --engine-strict on this Node (a dependency that
// declares a newer Node fails the install: the cookie@2 problem), then import
// every entry point there with fastify and better-sqlite3 deleted (none may
// load them) and type-check a consumer against the shipped declarations.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';

const npm = (args: string[], cwd: string) =>
  execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });

const packDir = tempDir('commitd-pack-');
// The build is `npm test`'s first step; packing must not rebuild.
const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], PACKAGE_ROOT));
const tarball = path.join(packDir, packed[0].filename as string);
const files: string[] = packed[0].files.map((f: { path: string }) => f.path);

t.test('the tarball holds what runs, and nothing else', async (t) => {
  for (const f of [
    'package.json',
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
    files.filter((f) => /^(test|bench|src)\/|\.ts$(?<!\.d\.ts)|\.map$/.test(f)),
    [],
    'no sources, tests, benchmarks or source maps',
  );
});

t.test('a clean install with --engine-strict on this Node, then every entry point imports', async (t) => {
  const app = tempDir('commitd-consumer-');
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  // --ignore-scripts: better-sqlite3 (a dependency of the service) would
  // compile for a minute here; nothing imported below loads it.
  let output = '';
  try {
    output = npm(
      ['install', '--engine-strict', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', tarball],
      app,
    );
  } catch (error) {
    t.fail(`npm install failed: ${(error as { stderr?: string }).stderr ?? error}`);
    return;
  }
  t.notMatch(output, /EBADENGINE|Unsupported engine/, 'no engine warnings');
  const cookie = JSON.parse(fs.readFileSync(path.join(app, 'node_modules/cookie/package.json'), 'utf8'));
  t.match(cookie.version, /^1\./, 'cookie 1.x (cookie 2 needs Node 22)');

  // Nothing a consumer imports may need these: delete them and import.
  for (const dep of ['fastify', 'better-sqlite3', '@fastify/swagger', '@fastify/swagger-ui']) {
    fs.rmSync(path.join(app, 'node_modules', dep), { recursive: true, force: true });
  }
  const probe = `
    const client = await import('commitd/client');
    const kit = await import('commitd/participant');
    const sqlite = await import('commitd/participant/sqlite');
    const pg = await import('commitd/participant/pg');
    const plugin = await import('commitd/participant/fastify');
    console.log(JSON.stringify([
      typeof client.CommitdClient, typeof client.TransactionAbortedError, typeof kit.createParticipant,
      typeof kit.nodeHandler, typeof kit.verifySignature, typeof sqlite.SqliteParticipantStore,
      typeof pg.PgParticipantStore, typeof plugin.participantPlugin,
    ]));`;
  const result = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: app, encoding: 'utf8' });
  t.same(JSON.parse(result), Array(8).fill('function'));

  // The shipped declarations type-check a consumer (NodeNext resolution through `exports`).
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
  fs.writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [path.join(PACKAGE_ROOT, 'node_modules', '@types')],
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = path.join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', app], { cwd: app, encoding: 'utf8' });
    t.pass('the consumer type-checks');
  } catch (error) {
    t.fail(`tsc: ${(error as { stdout?: string }).stdout}`);
  }
});
