// No Docker engine runs where the tests run, so the image is checked by
// other means: the Dockerfile is read for what a production image must do,
// and its runtime stage is re-enacted in a temp directory (production
// dependencies only, the built service, the image's environment), where the
// service must start, pass the image's own HEALTHCHECK command and stop
// cleanly on SIGTERM.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { spawnService } from '../support/service.js';

const dockerfile = fs.readFileSync(path.join(PACKAGE_ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
const stages = dockerfile.split(/^FROM /m).slice(1);
const runtime = stages[stages.length - 1] ?? '';

function instruction(stage: string, name: string): string[] {
  return [...stage.matchAll(new RegExp(`^${name}\\s+(.*)$`, 'gm'))].map((m) => (m[1] ?? '').trim());
}

function runtimeEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of instruction(runtime, 'ENV')) {
    for (const m of line.matchAll(/(\w+)=(\S+)/g)) env[m[1] as string] = m[2] as string;
  }
  return env;
}

t.test('the Dockerfile builds in one stage and ships a lean, unprivileged runtime', async (t) => {
  t.ok(stages.length >= 2, 'multi-stage');
  t.equal(stages.length, 2, 'two stages: one that builds, one that runs');
  const build = stages[0] ?? '';
  t.match(build, /npm ci/, 'the build stage installs with npm ci');
  t.match(build, /npm run build/, 'the build stage compiles the TypeScript');
  t.match(build, /npm prune --omit=dev/, 'and prunes to production dependencies');
  t.match(
    build,
    /node ops\/service-dependencies\.mjs && npm prune --omit=dev/,
    "after making the service's optional peers (better-sqlite3, fastify, pg) production dependencies",
  );
  t.match(build, /COPY ops\/service-dependencies\.mjs /, 'a script the build stage copies in');
  // Building happens in that one stage only: the runtime stage installs,
  // compiles and rebuilds nothing, and takes what was built from it.
  for (const step of [/npm (ci|install|rebuild|run build)/, /\btsc\b/, /apt-get install/, /\b(g\+\+|make|python3)\b/]) {
    t.notMatch(instruction(runtime, 'RUN').join('\n'), step, `the runtime stage does not run ${step}`);
  }
  const buildName = /^\S+\s+AS\s+(\S+)/i.exec(build)?.[1];
  t.ok(buildName, 'the build stage is named');
  const copied = instruction(runtime, 'COPY').filter((c) => c.startsWith('--from='));
  t.same(
    copied.map((c) => c.split(/\s+/)[0]),
    copied.map(() => `--from=${buildName}`),
    'everything built comes from the build stage',
  );
  t.ok(
    copied.some((c) => /dist\/src/.test(c)) && copied.some((c) => /node_modules/.test(c)),
    'the runtime copies the compiled service and the pruned dependencies from it',
  );
  const user = instruction(runtime, 'USER');
  t.equal(user.length, 1);
  t.notMatch(user[0] ?? '', /^(root|0)$/, 'runs as a non-root user');
  const env = runtimeEnv();
  t.equal(env.COMMITD_HOST, '0.0.0.0', 'listens on every interface in the container');
  t.ok(env.COMMITD_DATA_DIR, 'has a data directory');
  t.same(JSON.parse(instruction(runtime, 'VOLUME')[0] ?? '[]'), [env.COMMITD_DATA_DIR], 'which is a volume');
  t.match(instruction(runtime, 'HEALTHCHECK')[0] ?? '', /\/healthz/, 'health-checked on /healthz');
  const cmd = JSON.parse(instruction(runtime, 'CMD').at(-1) ?? 'null');
  t.same(cmd, ['node', 'dist/src/main.js'], 'exec form: node is PID 1 and gets SIGTERM itself');
});

t.test(
  'the runtime stage, re-enacted: production dependencies suffice, healthcheck passes, SIGTERM exits 0',
  async (t) => {
    const app = tempDir('commitd-image-');
    t.teardown(() => fs.rmSync(app, { recursive: true, force: true }));
    for (const f of ['package.json', 'package-lock.json'])
      fs.copyFileSync(path.join(PACKAGE_ROOT, f), path.join(app, f));
    // The build stage's manifest: the service's optional peers made production dependencies.
    execFileSync(process.execPath, [path.join(PACKAGE_ROOT, 'ops', 'service-dependencies.mjs')], {
      cwd: app,
      stdio: 'pipe',
    });
    // Production dependencies only, from the npm cache the test run's own install filled.
    execFileSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: app,
      stdio: 'pipe',
    });
    for (const peer of ['better-sqlite3', 'fastify', 'pg']) {
      t.ok(fs.existsSync(path.join(app, 'node_modules', peer, 'package.json')), `${peer} is in the image`);
    }
    // The native module the image's build stage compiles: the one built here.
    const addon = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
    fs.mkdirSync(path.dirname(path.join(app, addon)), { recursive: true });
    fs.copyFileSync(path.join(PACKAGE_ROOT, addon), path.join(app, addon));
    t.notOk(fs.existsSync(path.join(app, 'node_modules/typescript')), 'no dev dependencies in the image');
    fs.cpSync(path.join(PACKAGE_ROOT, 'dist/src'), path.join(app, 'dist/src'), { recursive: true });
    fs.cpSync(path.join(PACKAGE_ROOT, 'config'), path.join(app, 'config'), { recursive: true });
    // The runtime stage copies the repository's package.json, not the build stage's.
    fs.copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(app, 'package.json'));

    // The image's environment, on a free port and a data directory of the test's own.
    const { COMMITD_PORT: _port, COMMITD_DATA_DIR: _dataDir, ...imageEnv } = runtimeEnv();
    // Bound to every interface without a token, the image refuses to start
    // (it exits while checking its configuration, before it binds anything).
    const open = spawnService({
      dataDir: path.join(app, 'data'),
      script: path.join(app, 'dist', 'src', 'main.js'),
      env: imageEnv,
      inheritCommitdEnv: false,
      as: { cwd: app },
    });
    open.ready.catch(() => undefined);
    t.equal((await open.exited).code, 2, 'without a token: exit 2');
    t.match(open.output(), /COMMITD_TOKENS/, 'naming the setting');
    t.match(dockerfile, /COMMITD_TOKENS=/, 'the Dockerfile shows how to give a token');
    const run = spawnService({
      dataDir: path.join(app, 'data'),
      script: path.join(app, 'dist', 'src', 'main.js'),
      env: { ...imageEnv, COMMITD_TOKENS: 'admin:image-test-token-0123456789' },
      as: { cwd: app },
    });
    const child = run.child;
    t.teardown(() => child.kill('SIGKILL'));
    await run.ready.catch(() => undefined);
    const output = run.output();
    t.match(output, /commitd ready/, output);
    const port = /"address":"0\.0\.0\.0:(\d+)"/.exec(output)?.[1];
    t.ok(port, 'bound to every interface');

    const health = JSON.parse(instruction(runtime, 'HEALTHCHECK')[0]?.replace(/^.*?CMD\s+/, '') ?? '[]') as string[];
    const [command, ...args] = health;
    t.equal(command, 'node');
    execFileSync(process.execPath, args, { env: { ...process.env, ...imageEnv, COMMITD_PORT: port }, stdio: 'pipe' });
    t.pass('the HEALTHCHECK command exits 0 against the running service');

    child.kill('SIGTERM');
    t.equal((await run.exited).code, 0, 'SIGTERM: clean exit');
    t.ok(fs.existsSync(path.join(app, 'data', 'commitd.db')), 'the decision log lives in COMMITD_DATA_DIR');
  },
);
