// The processes of a chaos run (npm run chaos, npm run chaos:cluster):
// services started again and again under the same name, port and files
// (Supervised), the durable participants, and the registry of what went wrong
// while the run was going on. Every child started is killed when the run
// ends, however it ends.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnService } from '../test/support/service.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
export const PARTICIPANT = path.join(here, 'durable-participant.js');
export const HOST = '127.0.0.1';

export const START_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 5;
const STOP_TIMEOUT_MS = 20_000;
const OUTPUT_TAIL_BYTES = 32 * 1024;
/** Finished transactions must stay readable for the whole run: the checker asks about every one. */
const RETENTION_MS = 7 * 24 * 3600 * 1000;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

export interface Violation {
  readonly kind: string;
  readonly tx: string | null;
  readonly detail: string;
}

/** What went wrong while the run was going on (unexpected exits, answers); the checker adds its own. */
export const runtimeViolations: Violation[] = [];
/** Worth knowing, not a violation (a port taken by someone else, …). */
export const notes: string[] = [];

// ---------------------------------------------------------------------------
// Processes

/** Every child ever started, so none outlives this process, whatever ends it. */
export const children = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export class Tail {
  private text = '';
  add(chunk: string): void {
    this.text = (this.text + chunk).slice(-OUTPUT_TAIL_BYTES);
  }
  lines(n: number): string {
    return this.text
      .split('\n')
      .slice(-n - 1)
      .join('\n');
  }
}

export interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once the process serves; rejects if it exits first or takes too long. */
  readonly ready: Promise<unknown>;
  /** We killed or stopped it: its exit is expected. */
  expected: boolean;
}

/** Starts one process of a kind; `ready` settles once it serves (or rejects if it exits first). */
export type Launch = (onOutput: (chunk: string) => void) => {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<unknown>;
};

/** One service process, started again and again under the same name, port and files. */
export class Supervised {
  private running: Running | null = null;
  readonly tail = new Tail();
  kills = 0;
  pauses = 0;
  /** Exits of its own that `tolerated` accepted. */
  toleratedExits = 0;
  /** Stopped by SIGSTOP, not yet continued. */
  private stopped = false;
  /** The end of the last action taken under exclusively(). */
  private lastAction: Promise<unknown> = Promise.resolve();

  /**
   * `logFile`: where every chunk of output is appended too, for the evidence
   * after a violation. `tolerated`: an exit of its own that is the service's
   * documented behaviour, not a violation (given the code and the output of
   * that run); it is counted and the process stays down until started again.
   */
  constructor(
    readonly label: string,
    private readonly launch: Launch,
    private readonly logFile: string | null = null,
    private readonly tolerated: (code: number | null, output: string) => boolean = () => false,
  ) {}

  get alive(): boolean {
    return this.running !== null;
  }

  /** Starts the process without waiting for it to serve. */
  spawn(): Running {
    if (this.running) throw new Error(`${this.label} is already running`);
    const log = this.logFile === null ? null : fs.createWriteStream(this.logFile, { flags: 'a' });
    log?.write(`--- ${new Date().toISOString()} ${this.label} starts\n`);
    const launched = this.launch((chunk) => {
      this.tail.add(chunk);
      log?.write(chunk);
    });
    const child = launched.child;
    children.add(child);
    const exited = launched.exited.then((exit) => {
      children.delete(child);
      log?.end(`--- ${new Date().toISOString()} ${this.label} exited (code ${exit.code}, signal ${exit.signal})\n`);
      return exit;
    });
    const running: Running = {
      child,
      exited,
      expected: false,
      ready: Promise.race([
        launched.ready,
        exited.then(({ code, signal }) => {
          throw new Error(`${this.label} exited during start (code ${code}, signal ${signal})`);
        }),
      ]),
    };
    running.ready.catch(() => {});
    this.running = running;
    exited.then(({ code, signal }) => {
      if (this.running === running) this.running = null;
      if (running.expected) return;
      if (code !== 0 && /EADDRINUSE|cannot listen/.test(launched.output())) {
        notes.push(`${this.label} could not listen (port taken by another process); started again`);
        return;
      }
      if (this.tolerated(code, launched.output())) {
        this.toleratedExits++;
        return;
      }
      runtimeViolations.push({
        kind: 'process-exited',
        tx: null,
        detail: `${this.label} exited on its own (code ${code}, signal ${signal}); last output:\n${this.tail.lines(30)}`,
      });
    });
    return running;
  }

  /** Starts the process and waits until it serves, trying again a few times if it exits during start. */
  async start(): Promise<void> {
    let lastError: Error | null = null;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      const running = this.spawn();
      try {
        await running.ready;
        return;
      } catch (error) {
        lastError = error as Error;
        if (this.running === running) await this.kill('SIGKILL', false);
        await sleep(250 * attempt);
      }
    }
    throw new Error(`${this.label} did not start after ${START_ATTEMPTS} attempts: ${lastError?.message}`);
  }

  /** Kills (or stops) the process and waits for it to be gone. Resolves with its exit code. */
  async kill(signal: NodeJS.Signals, count = true): Promise<number | null> {
    const running = this.running;
    if (!running) return null;
    running.expected = true;
    if (count && signal === 'SIGKILL') this.kills++;
    running.child.kill(signal);
    // A stopped process would hold any other signal until continued.
    if (this.stopped) running.child.kill('SIGCONT');
    const timer = setTimeout(() => {
      runtimeViolations.push({
        kind: 'stop-timeout',
        tx: null,
        detail: `${this.label} did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}; killed`,
      });
      running.child.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    const { code } = await running.exited;
    clearTimeout(timer);
    return code;
  }

  /**
   * Runs `action` once every action taken before through this method is
   * over: a fault and a restart of the same process never interleave.
   */
  exclusively<T>(action: () => Promise<T>): Promise<T> {
    const result = this.lastAction.then(action);
    this.lastAction = result.catch(() => {});
    return result;
  }

  /**
   * Stops the process (SIGSTOP) for `ms`, then lets it go on (SIGCONT): it
   * neither runs nor exits meanwhile, its sockets stay open and silent.
   * Resolves false if it was not running.
   */
  async pause(ms: number): Promise<boolean> {
    const running = this.running;
    if (!running) return false;
    this.pauses++;
    this.stopped = true;
    running.child.kill('SIGSTOP');
    await sleep(ms);
    this.stopped = false;
    running.child.kill('SIGCONT');
    return true;
  }
}

const portsTaken = new Set<number>();

/** A free port below the ephemeral range, so no outgoing connection can take it while its owner restarts. */
export async function stablePort(): Promise<number> {
  let low = 32768;
  try {
    const [first] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    if (Number(first) > 12_000) low = Number(first);
  } catch {
    // not Linux: assume the usual range
  }
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
    if (portsTaken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, HOST, () => s.close(() => resolve(true)));
    });
    if (free) {
      portsTaken.add(port);
      return port;
    }
  }
  throw new Error('no free port found');
}

/**
 * A coordinator, always on the same port and data directory (test/support/service.ts
 * starts it), with short timeouts and retries; `env` adds to its settings
 * (a store, a cluster's).
 */
export function coordinatorLaunch(port: number, dataDir: string, env: Record<string, string> = {}): Launch {
  return (onOutput) =>
    spawnService({
      dataDir,
      port,
      // Only our settings: a COMMITD_* of the caller's shell must not change the run.
      inheritCommitdEnv: false,
      env: {
        COMMITD_LOG_LEVEL: 'warn',
        COMMITD_RETENTION_MS: String(RETENTION_MS),
        COMMITD_PREPARE_TIMEOUT_MS: '2000',
        COMMITD_PHASE_TWO_TIMEOUT_MS: '2000',
        COMMITD_RETRY_DELAY_MS_MIN: '10',
        COMMITD_RETRY_DELAY_MS_MAX: '250',
        COMMITD_SWEEP_INTERVAL_MS: '100',
        COMMITD_SHUTDOWN_GRACE_MS: '10000',
        ...env,
      },
      // If this process dies, even by SIGKILL, the coordinator stops too.
      stopWithParent: true,
      onOutput,
      readyTimeoutMs: START_TIMEOUT_MS,
    });
}

/** A durable participant (durable-participant.ts): ready once it says so. */
export function participantLaunch(argv: readonly string[]): Launch {
  return (onOutput) => {
    const child = spawn(process.execPath, [PARTICIPANT, ...argv], {
      cwd: root,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const collect = (chunk: string) => {
      onOutput(chunk);
      if (output.length < OUTPUT_TAIL_BYTES) output += chunk;
    };
    child.stdout?.setEncoding('utf8').on('data', collect);
    child.stderr?.setEncoding('utf8').on('data', collect);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    const ready = (async () => {
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
        if (output.includes('durable-participant ready')) return;
        await sleep(20);
      }
      throw new Error(`participant did not become ready within ${START_TIMEOUT_MS} ms`);
    })();
    ready.catch(() => {});
    return { child, output: () => output, exited, ready };
  };
}

export interface Participants {
  readonly processes: Supervised[];
  /** Their base URLs, as a transaction names them. */
  readonly urls: string[];
  /** Their files, for the checker. */
  readonly files: string[];
}

/** `count` durable participants p0, p1, … with their files in `work` (not started). */
export async function durableParticipants(work: string, count: number, noFraction: number): Promise<Participants> {
  const participants: Participants = { processes: [], urls: [], files: [] };
  for (let i = 0; i < count; i++) {
    const port = await stablePort();
    const file = path.join(work, `p${i}.log`);
    const argv = ['--port', String(port), '--name', `p${i}`, '--file', file, '--no-fraction', String(noFraction)];
    participants.processes.push(new Supervised(`participant p${i}`, participantLaunch(argv)));
    participants.urls.push(`http://${HOST}:${port}/tx`);
    participants.files.push(file);
  }
  return participants;
}

/** A transaction's participants, each told the logical transaction's key (its files record it). */
export function participantsOf(urls: readonly string[], key: string) {
  return urls.map((url, i) => ({ name: `p${i}`, url, payload: { key } }));
}

/**
 * Stops every child on exit and on SIGINT, SIGTERM and SIGHUP, and bounds
 * the whole run: after `budgetMs` whatever hangs, every child is killed and
 * the run exits 2.
 */
export function guardRun(label: string, budgetMs: number): void {
  process.on('exit', killAllChildren);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`${label}: ${signal}: stopping every process started`);
      killAllChildren();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
  setTimeout(() => {
    console.error(`${label}: the run took longer than ${budgetMs} ms; stopping every process started`);
    killAllChildren();
    process.exit(2);
  }, budgetMs).unref();
}

/** Runs a chaos run's main: exits with its code, or 2 (every child killed) if it throws. */
export function runMain(label: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error) => {
      console.error(`${label}: the run failed:`, error);
      killAllChildren();
      process.exit(2);
    },
  );
}
