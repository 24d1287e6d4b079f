// `commitd` the command line as a child process (node bin/commitd.js), the
// way an operator or a script runs it: exit code, stdout and stderr.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';

export const BIN = path.join(PACKAGE_ROOT, 'bin', 'commitd.js');
/** A bound, not a measurement: a command takes well under a second on an idle machine. */
const CLI_TIMEOUT_MS = 120_000;

export interface Ran {
  /** null when it did not exit by itself within the timeout. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `commitd ARGS` with `env` as its only COMMITD_* variables (this process's are left out). */
export function runCli(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<Ran> {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COMMITD_')) base[k] = v;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...base, ...env }, timeout: CLI_TIMEOUT_MS, encoding: 'utf8' },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
