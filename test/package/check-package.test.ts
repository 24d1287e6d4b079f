// ops/check-package.mjs, which CI runs after `npm publish --dry-run`: it
// passes this package as built, and refuses a package whose tarball would
// carry tests, or lack what its manifest promises.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';

const SCRIPT = path.join(PACKAGE_ROOT, 'ops', 'check-package.mjs');

function check(cwd: string): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

t.test('this package, as built, is ready to publish', async (t) => {
  t.ok(fs.existsSync(path.join(PACKAGE_ROOT, 'dist', 'src', 'main.js')), 'built (npm test builds first)');
  const r = check(PACKAGE_ROOT);
  t.equal(r.status, 0, r.output);
  t.match(r.output, /^commitd@\d+\.\d+\.\d+: \d+ files, each one a user needs/);
});

t.test('a tarball with tests in it, or without what it promises, is refused', async (t) => {
  const dir = tempDir('commitd-check-package-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'test'));
  fs.mkdirSync(path.join(dir, 'dist', 'src'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'test', 'a.test.ts'), '');
  fs.writeFileSync(path.join(dir, 'dist', 'src', 'main.js.map'), '{}');
  fs.writeFileSync(path.join(dir, 'README.md'), '# x\n');
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({
      name: 'checked',
      version: '1.0.0',
      private: true,
      main: 'dist/src/main.js',
      files: ['test', 'dist'],
    }),
  );
  const r = check(dir);
  t.equal(r.status, 1, r.output);
  t.match(r.output, 'test/a.test.ts: tests do not belong in the package');
  t.match(r.output, 'dist/src/main.js.map: source maps do not belong in the package');
  t.match(r.output, 'dist/src/main.js: missing');
  t.match(r.output, 'LICENSE: missing');
  t.match(r.output, '"private": true');
  t.match(r.output, 'no repository.url');
  t.match(r.output, 'no engines.node');
});
