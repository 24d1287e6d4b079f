// npm run bench:takeover, short: two rounds of each failure kind (SIGKILL,
// SIGSTOP) on two instances sharing a private PostgreSQL cluster. Every
// transaction the failed instance left in doubt must reach every participant
// with the right outcome (commit for the decided, abort for the undecided)
// within the bench's deadline, and the failed instance must come back with
// shards. The times are printed, not asserted (a shared, noisy machine).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir, withoutCoverage } from '../support/harness.js';

const BENCH = path.join(PACKAGE_ROOT, 'dist', 'bench', 'takeover.js');
const RUN_TIMEOUT_MS = 55_000;

interface Round {
  round: number;
  kind: 'kill' | 'pause';
  victim: string;
  transactions: number;
  resolvedMs: number | null;
  rejoinMs: number | null;
  problems: string[];
}

t.test(
  'bench:takeover --rounds 2: every outcome right and reached at every participant',
  { timeout: 60_000 },
  async (t) => {
    const summaryFile = path.join(tempDir('commitd-takeover-'), 'summary.json');
    const child = spawn(
      process.execPath,
      [BENCH, '--rounds', '2', '--decided', '3', '--undecided', '3', '--no-write', '--quiet', '--summary', summaryFile],
      { cwd: PACKAGE_ROOT, env: withoutCoverage(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      output += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      output += c;
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    t.comment(output.trim());
    t.equal(code, 0, 'the bench exits 0: no wrong outcome, nothing unresolved, the cluster settled every time');
    t.ok(fs.existsSync(summaryFile), 'the bench wrote its summary');
    if (!fs.existsSync(summaryFile)) return;
    const report = JSON.parse(fs.readFileSync(summaryFile, 'utf8')) as { failures: number; rounds: Round[] };
    t.equal(report.failures, 0, 'no failed round');
    for (const kind of ['kill', 'pause'] as const) {
      t.equal(report.rounds.filter((r) => r.kind === kind).length, 2, `two ${kind} rounds`);
    }
    t.same(new Set(report.rounds.map((r) => r.victim)), new Set(['A', 'B']), 'both instances were failed');
    for (const r of report.rounds) {
      t.same(r.problems, [], `round ${r.round + 1} ${r.kind} ${r.victim}: no problem`);
      t.ok(
        r.transactions > 0 && r.resolvedMs !== null,
        `round ${r.round + 1} ${r.kind}: all ${r.transactions} resolved everywhere`,
      );
      t.ok(r.rejoinMs !== null, `round ${r.round + 1} ${r.kind}: ${r.victim} back with shards`);
    }
  },
);
