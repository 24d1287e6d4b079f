// The chaos run in short (npm run chaos for the long one): the built
// coordinator and three durable participants as real processes, SIGKILLed at
// random moments under a load of one-shot commits, then a checker over the
// participants' own files, the clients' answers and the coordinator's
// outcomes. It runs the built script, as CI would, and needs `npm run build`.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';

const CHAOS = path.join(PACKAGE_ROOT, 'dist', 'bench', 'chaos.js');
// What the run must show, asserted below. A slow or shared machine restarts
// a process in seconds and answers fewer transactions per second, so the run
// does not stop at SECONDS: load and faults go on until it has shown all of
// this, for at most MAX_SECONDS (see --min-* in bench/chaos.ts).
const MIN_COORDINATOR_KILLS = 3;
const MIN_TRANSACTIONS = 51;
const MIN_EACH_OUTCOME = 1;
const SECONDS = 20;
const MAX_SECONDS = 120;
// A fixed seed whose fault schedule has its first three coordinator kills
// early (within about 2.5 s of scheduled pauses).
const SEED = 65;

t.test('under random SIGKILLs every transaction has one outcome everywhere, as its client was told', async (t) => {
  t.ok(fs.existsSync(CHAOS), `${CHAOS} exists (npm run build)`);
  const args = [
    ['--seconds', SECONDS],
    ['--max-seconds', MAX_SECONDS],
    ['--seed', SEED],
    ['--min-coordinator-kills', MIN_COORDINATOR_KILLS],
    ['--min-answers', MIN_TRANSACTIONS],
    ['--min-each-outcome', MIN_EACH_OUTCOME],
  ].flatMap(([flag, value]) => [String(flag), String(value)]);
  const child = spawn(process.execPath, [CHAOS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  // The chaos script stops its own processes on SIGTERM; this only matters if the test is cut short.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));

  const summary = stdout.split('\n').find((line) => line.startsWith('chaos: seconds='));
  t.comment(summary ?? 'no summary line');
  // The whole output is shown only when an assertion fails.
  const output = { stdout: stdout.slice(-20_000), stderr: stderr.slice(-20_000) };
  t.ok(summary, 'a summary line is printed', output);
  const field = (name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(summary ?? '')?.[1] ?? Number.NaN);
  t.equal(code, 0, 'exit 0', output);
  t.equal(field('violations'), 0, 'no violations', output);
  t.equal(field('seed'), SEED, 'the seed is reported');
  t.match(summary ?? '', /\bminimums=reached\b/, `the run reached its minimums within ${MAX_SECONDS} s`, output);
  t.ok(field('coordinator_kills') >= MIN_COORDINATOR_KILLS, 'the coordinator was killed at least 3 times', output);
  t.ok(field('transactions') >= MIN_TRANSACTIONS, 'more than 50 transactions', output);
  t.ok(
    field('committed') >= MIN_EACH_OUTCOME && field('aborted') >= MIN_EACH_OUTCOME,
    'both outcomes occurred',
    output,
  );
  t.equal(field('gave_up'), 0, 'every client got an answer', output);
});
