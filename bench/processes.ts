// Processes for the benchmarks: the built coordinator as a child process
// (through the one launcher the tests and the chaos run use too), free
// ports, and what /proc and /metrics say about a process.

import { type ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnService } from '../test/support/service.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

const CLOCK_TICKS_PER_S = 100;

/**
 * CPU seconds (user + system) a process has used, from /proc; with
 * reapedChildren, plus what its children that have exited and been waited
 * for used (cutime + cstime).
 */
export function cpuSeconds(pid: number, options: { reapedChildren?: boolean } = {}): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const own = Number(fields[11]) + Number(fields[12]);
  const reaped = options.reapedChildren ? Number(fields[13]) + Number(fields[14]) : 0;
  return (own + reaped) / CLOCK_TICKS_PER_S;
}

/** Peak resident memory of a process so far, in MB. */
export function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

export async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resident memory of a process now, in MB. */
export function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** The built coordinator on a free port, its output echoed, once it serves (see test/support/service.ts). */
export async function startCoordinator(
  dataDir: string,
  options: { profileDir?: string | null; env?: Record<string, string> } = {},
): Promise<{ child: ChildProcess; url: string }> {
  const run = spawnService({
    dataDir,
    port: await freePort(),
    env: { COMMITD_LOG_LEVEL: 'warn', ...options.env },
    nodeArgs: options.profileDir ? ['--cpu-prof', '--cpu-prof-dir', options.profileDir] : [],
    echo: true,
  });
  return { child: run.child, url: await run.ready };
}

export async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const i = line.lastIndexOf(' ');
    values.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return values;
}

/** Two benchmark participants in a child process (bench/participant-server.ts). */
export async function startParticipants(durableDir: string | null): Promise<{ child: ChildProcess; urls: string[] }> {
  const ports = [await freePort(), await freePort()];
  const args = [...(durableDir ? ['--durable', durableDir] : []), ...ports.map(String)];
  const child = fork(path.join(here, 'participant-server.js'), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let listening = 0;
  await new Promise<void>((resolve) =>
    child.on('message', () => {
      if (++listening === ports.length) resolve();
    }),
  );
  return { child, urls: ports.map((p) => `http://127.0.0.1:${p}/tx`) };
}

/** Writes one benchmark's summary to bench/results/NAME.json, for BENCHMARKS.md to show. */
export function saveResult(name: string, script: string, summary: Record<string, unknown>): void {
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const result = {
    date: new Date().toISOString(),
    command: `npm run ${script}${argsText()}`,
    ...summary,
  };
  fs.writeFileSync(path.join(dir, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
}

/** Reads a summary saveResult wrote, if there is one. */
export function loadResult(name: string): Record<string, unknown> | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'bench', 'results', `${name}.json`), 'utf8'));
  } catch {
    return null;
  }
}

function argsText(): string {
  const args = process.argv.slice(2).join(' ');
  return args ? ` -- ${args}` : '';
}
