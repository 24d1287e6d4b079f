// npm run bench:ab's measuring half (bench/ab.ts), short, on this checkout's
// own build as both A and B: every measurement of every pair is taken, the
// order alternates (AB, then BA), and the summary compares each figure. The
// figures are printed, not asserted (a shared, noisy machine).

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { withoutCoverage } from '../support/harness.js';

const AB = path.join(PACKAGE_ROOT, 'dist', 'bench', 'ab.js');

t.test('an A/A run: two pairs, both orders, every figure compared, nothing failed', async (t) => {
  const run = spawnSync(
    process.execPath,
    [
      AB,
      '--a',
      PACKAGE_ROOT,
      '--b',
      PACKAGE_ROOT,
      '--pairs',
      '2',
      '--seconds',
      '0.5',
      '--clients',
      '4',
      '--rate',
      '50',
    ],
    { encoding: 'utf8', env: withoutCoverage(), timeout: 120_000 },
  );
  t.equal(run.status, 0, `exit 0\n${run.stderr}`);
  const measured = run.stdout.split('\n').filter((l) => l.startsWith('pair '));
  t.equal(measured.length, 2 * 3 * 2, 'two pairs × three measurements × two sides');
  t.match(measured[0] ?? '', /^pair 1 A closed/, 'pair 1: A first');
  t.match(measured[1] ?? '', /^pair 1 B closed/);
  t.match(measured[6] ?? '', /^pair 2 B closed/, 'pair 2: B first');
  t.match(
    measured[2] ?? '',
    /^pair 1 A rate\s+\d+ tx\/s, p50 [\d.]+ ms, p99 [\d.]+ ms, CPU \d+ µs\/tx/,
    'the fixed-rate run',
  );
  for (const figure of [
    'throughput',
    'p50, 4 clients',
    'p99, 4 clients',
    'CPU at 50 tx/s',
    'p50 at 50',
    'p99 at 50',
    'p50, 1 client',
  ]) {
    t.match(
      run.stdout,
      new RegExp(`^${figure.replace(/[()]/g, '\\$&')}.* A .* B .* B/A \\d+\\.\\d+ \\(range`, 'm'),
      figure,
    );
  }
  t.match(run.stdout, /^failed transactions: 0$/m);
  console.log(run.stdout.slice(run.stdout.indexOf('medians')));
});
