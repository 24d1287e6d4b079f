// A chaos run (dist/bench/chaos.js, dist/bench/cluster-chaos.js) as a child
// process of a test: its exit code, its output, and the figures of its
// summary line (`label: name=value …`), read by name.

import { spawn } from 'node:child_process';
import type { Test } from 'tap';

export interface ChaosRun {
  /** The flags it ran with. */
  readonly flags: Flags;
  readonly code: number | null;
  /** The summary line, or null if the run printed none. */
  readonly summary: string | null;
  /** A figure of the summary line; NaN when absent. */
  field(name: string): number;
  /** The end of the output, for an assertion's diagnostics: shown only when it fails. */
  readonly output: { readonly stdout: string; readonly stderr: string };
}

const OUTPUT_SHOWN_BYTES = 20_000;

/** --name value, without the dashes; a range as `min,max`. */
export type Flags = Readonly<Record<string, string | number>>;

/** Runs the script with `flags` to its end; if the test ends first, the run is stopped (SIGTERM). */
export async function runChaos(t: Test, script: string, label: string, flags: Flags): Promise<ChaosRun> {
  const args = Object.entries(flags).flatMap(([flag, value]) => [`--${flag}`, String(value)]);
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    stdout += c;
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  // The chaos scripts stop their own processes on SIGTERM; this only matters if the test is cut short.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const summary = stdout.split('\n').find((line) => line.startsWith(`${label}: seconds=`)) ?? null;
  return {
    flags,
    code,
    summary,
    field: (name) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(summary ?? '')?.[1] ?? Number.NaN),
    output: { stdout: stdout.slice(-OUTPUT_SHOWN_BYTES), stderr: stderr.slice(-OUTPUT_SHOWN_BYTES) },
  };
}

/**
 * What every chaos run must show: a summary, exit 0, no violation, the seed
 * it was given, its minimums reached within --max-seconds, at least
 * --min-answers transactions, at least --min-each-outcome of each outcome,
 * an answer for every client.
 */
export function assertClean(t: Test, run: ChaosRun): void {
  const { summary, field, output, flags } = run;
  const minTransactions = Number(flags['min-answers'] ?? 0);
  const minEachOutcome = Number(flags['min-each-outcome'] ?? 0);
  t.comment(summary ?? 'no summary line');
  t.ok(summary, 'a summary line is printed', output);
  t.equal(run.code, 0, 'exit 0', output);
  t.equal(field('violations'), 0, 'no violations', output);
  t.equal(field('seed'), Number(flags.seed), 'the seed is reported');
  t.match(
    summary ?? '',
    /\bminimums=reached\b/,
    `the run reached its minimums within ${flags['max-seconds']} s`,
    output,
  );
  t.ok(field('transactions') >= minTransactions, `at least ${minTransactions} transactions`, output);
  t.ok(field('committed') >= minEachOutcome && field('aborted') >= minEachOutcome, 'both outcomes occurred', output);
  t.equal(field('gave_up'), 0, 'every client got an answer', output);
}
