// The built service (dist/src/main.js) as a child process, for tests that
// kill it: SIGKILL at any moment, SIGTERM for a clean stop.

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';
import { waitUntil } from './participant.js';

export const MAIN = path.join(PACKAGE_ROOT, 'dist', 'src', 'main.js');

export interface Service {
  readonly url: string;
  readonly child: ChildProcess;
  readonly output: () => string;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ExitedService {
  readonly code: number | null;
  readonly output: string;
}

/** Spawns commitd on `dataDir`, collecting its output; `as` runs it as another user (uid/gid) from another directory. */
export function launch(
  dataDir: string,
  env: Record<string, string>,
  as: { uid?: number; gid?: number; cwd?: string } = {},
): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [MAIN], {
    ...as,
    env: {
      ...process.env,
      COMMITD_DATA_DIR: dataDir,
      COMMITD_PORT: '0',
      COMMITD_HOST: '127.0.0.1',
      COMMITD_LOG_LEVEL: 'info',
      COMMITD_RETRY_DELAY_MS_MIN: '10',
      COMMITD_RETRY_DELAY_MS_MAX: '200',
      COMMITD_PREPARE_TIMEOUT_MS: '2000',
      COMMITD_PHASE_TWO_TIMEOUT_MS: '2000',
      COMMITD_SWEEP_INTERVAL_MS: '50',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  child.stderr?.setEncoding('utf8').on('data', (c: string) => {
    out += c;
  });
  return { child, output: () => out };
}

/** Starts commitd and resolves once /readyz says ready. */
export async function startService(dataDir: string, env: Record<string, string> = {}): Promise<Service> {
  const { child, output } = launch(dataDir, env);
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  let url = '';
  await waitUntil(
    () => {
      if (exited) throw new Error(`commitd exited during start:\n${output()}`);
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output());
      if (m?.[1]) url = m[1];
      return /commitd ready/.test(output());
    },
    20_000,
    'commitd to start',
  );
  return {
    url,
    child,
    output,
    kill: (signal = 'SIGKILL') =>
      new Promise((resolve) => {
        if (exited) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }),
  };
}

/** Runs commitd expecting it to refuse to start; resolves with its exit code and output. */
export function runToExit(
  dataDir: string,
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<ExitedService> {
  const { child, output } = launch(dataDir, env);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`commitd did not exit within ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output() });
    });
  });
}
