// The built service (dist/src/main.js) as a child process: the one way the
// tests, the benchmarks and the chaos run start commitd. The tests kill it
// (SIGKILL at any moment, SIGTERM for a clean stop), the benchmarks measure
// it, the chaos run restarts it again and again on the same port.
//
// It is part of the build (tsconfig.build.json) because the benchmarks and
// the chaos run are run from dist/.

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';

export const MAIN = path.join(PACKAGE_ROOT, 'dist', 'src', 'main.js');

/**
 * Short retry delays, timeouts and sweep, so tests that wait for a retry or
 * a deadline take milliseconds, not seconds.
 */
export const FAST_SETTINGS: Readonly<Record<string, string>> = {
  COMMITD_RETRY_DELAY_MS_MIN: '10',
  COMMITD_RETRY_DELAY_MS_MAX: '200',
  COMMITD_PREPARE_TIMEOUT_MS: '2000',
  COMMITD_PHASE_TWO_TIMEOUT_MS: '2000',
  COMMITD_SWEEP_INTERVAL_MS: '50',
};

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 20_000;
/** The output is checked this often; /readyz every READY_REQUEST_EVERY checks. */
const READY_POLL_MS = 10;
const READY_REQUEST_EVERY = 5;
const READY_REQUEST_TIMEOUT_MS = 2_000;
const OUTPUT_MAX_BYTES = 1024 * 1024;

export interface ServiceOptions {
  readonly dataDir: string;
  /** The service's entry point: this checkout's build unless given (the image test runs a copy). */
  readonly script?: string;
  /** Arguments after the script (`serve` when the script is bin/commitd.js). */
  readonly args?: readonly string[];
  /** Listen port; 0 (the default) lets the system pick one, read from the service's log. */
  readonly port?: number;
  /** COMMITD_* settings; they win over everything else. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Pass this process's own COMMITD_* variables on (the default), or drop
   * them so a caller's shell cannot change a run.
   */
  readonly inheritCommitdEnv?: boolean;
  /** Arguments for node before the script (a CPU profile, a preloaded module). */
  readonly nodeArgs?: readonly string[];
  /** Stop the service when this process goes away, even by SIGKILL (no exit handler runs then). */
  readonly stopWithParent?: boolean;
  /** Echo the service's output on this process's stdout and stderr as it comes. */
  readonly echo?: boolean;
  /** Every chunk of output, as it comes. */
  readonly onOutput?: (chunk: string) => void;
  /** Another user (uid/gid) and working directory. */
  readonly as?: { readonly uid?: number; readonly gid?: number; readonly cwd?: string };
  readonly readyTimeoutMs?: number;
}

export interface ServiceProcess {
  readonly child: ChildProcess;
  /** The service's stdout and stderr so far (the last OUTPUT_MAX_BYTES of them). */
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The base URL once /readyz answers 200; rejects if the service exits first or takes too long. */
  readonly ready: Promise<string>;
}

/**
 * A timer in the service that stops it once its parent is gone: preloaded as
 * a data: module, it adds a timer to the process and changes nothing else.
 */
const STOP_WITH_PARENT = `--import=data:text/javascript,${encodeURIComponent(
  'const p=process.ppid;setInterval(()=>{if(process.ppid!==p)process.kill(process.pid,"SIGTERM")},500).unref();',
)}`;

/** Spawns commitd without waiting for it; `ready` says when it serves. */
export function spawnService(options: ServiceOptions): ServiceProcess {
  const port = options.port ?? 0;
  const inherited: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (options.inheritCommitdEnv !== false || !k.startsWith('COMMITD_')) inherited[k] = v;
  }
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    COMMITD_DATA_DIR: options.dataDir,
    COMMITD_HOST: HOST,
    COMMITD_PORT: String(port),
    COMMITD_LOG_LEVEL: 'info',
    ...options.env,
  };
  // With port 0 the address is read from fastify's "Server listening at"
  // line, which is logged at level info.
  if (port === 0 && !['info', 'debug', 'trace'].includes(env.COMMITD_LOG_LEVEL ?? '')) {
    throw new Error('a service on port 0 needs COMMITD_LOG_LEVEL info or lower to tell its address');
  }
  const nodeArgs = [...(options.stopWithParent ? [STOP_WITH_PARENT] : []), ...(options.nodeArgs ?? [])];
  const child = spawn(process.execPath, [...nodeArgs, options.script ?? MAIN, ...(options.args ?? [])], {
    cwd: PACKAGE_ROOT,
    ...options.as,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (echo: NodeJS.WriteStream | null) => (chunk: string) => {
    out = out.length + chunk.length > OUTPUT_MAX_BYTES ? (out + chunk).slice(-OUTPUT_MAX_BYTES) : out + chunk;
    options.onOutput?.(chunk);
    echo?.write(chunk);
  };
  child.stdout?.setEncoding('utf8').on('data', collect(options.echo ? process.stdout : null));
  child.stderr?.setEncoding('utf8').on('data', collect(options.echo ? process.stderr : null));
  const output = () => out;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const ready = Promise.race([
    untilReady(port, output, gone, options.readyTimeoutMs ?? READY_TIMEOUT_MS),
    exited.then(({ code, signal }) => {
      throw new Error(`commitd exited during start (code ${code}, signal ${signal}):\n${output()}`);
    }),
  ]);
  // A caller that only watches `exited` (a service expected to refuse to start) need not handle this.
  ready.catch(() => {});
  return { child, output, exited, ready };
}

/**
 * Ready once the service logs "commitd ready" (logged at level info, right
 * after /readyz turns 200), or, at a quieter log level, once /readyz
 * answers 200.
 */
async function untilReady(port: number, output: () => string, gone: () => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  let url = port === 0 ? null : `http://${HOST}:${port}`;
  for (let poll = 0; Date.now() < deadline && !gone(); poll++) {
    url ??= /Server listening at (https?:\/\/127\.0\.0\.1:\d+)/.exec(output())?.[1] ?? null;
    if (url !== null && /commitd ready/.test(output())) return url;
    if (url !== null && poll % READY_REQUEST_EVERY === 0) {
      try {
        const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(READY_REQUEST_TIMEOUT_MS) });
        await res.arrayBuffer();
        if (res.status === 200) return url;
      } catch {
        // not listening yet
      }
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
  throw new Error(`commitd did not become ready within ${timeoutMs} ms:\n${output()}`);
}

export interface Service {
  readonly url: string;
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Sends the signal (default SIGKILL) and resolves with the exit code once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts commitd with the fast test settings (overridable by `env`) and resolves once it serves. */
export async function startService(dataDir: string, env: Record<string, string> = {}): Promise<Service> {
  const run = spawnService({ dataDir, env: { ...FAST_SETTINGS, ...env } });
  const url = await run.ready;
  return {
    url,
    child: run.child,
    output: run.output,
    kill: async (signal = 'SIGKILL') => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
      return (await run.exited).code;
    },
  };
}

export interface ExitedService {
  readonly code: number | null;
  readonly output: string;
}

/** Runs commitd expecting it to refuse to start; resolves with its exit code and output. */
export async function runToExit(
  dataDir: string,
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<ExitedService> {
  const run = spawnService({ dataDir, env: { ...FAST_SETTINGS, ...env } });
  const timer = setTimeout(() => run.child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await run.exited;
  clearTimeout(timer);
  if (signal === 'SIGKILL') throw new Error(`commitd did not exit within ${timeoutMs} ms:\n${run.output()}`);
  return { code, output: run.output() };
}
