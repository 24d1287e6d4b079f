// Several commitd instances sharing one PostgreSQL store (issue #13), for the
// benchmarks: each a real process on a fixed port with its advertised URL, so
// an instance killed and started again comes back at the same address, as
// the other instances expect. Also what an instance says of the cluster
// (GET /v1/cluster) and the processes of the private PostgreSQL cluster, whose
// CPU the benchmarks count.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PostgresCluster } from '../test/support/postgres-cluster.js';
import { type ServiceProcess, spawnService } from '../test/support/service.js';
import { cpuSeconds, freePort } from './processes.js';

/** GET /v1/cluster, as the multi-instance contract describes it. */
export interface ClusterView {
  readonly self: string;
  readonly shards: number;
  readonly instances: readonly { id: string; url: string; shards: number; self: boolean }[];
}

const CLUSTER_REQUEST_TIMEOUT_MS = 1_000;
const POLL_MS = 20;
const STABLE_FOR_MS = 1_000;

export interface Instance {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** The running process (replaced by start()). */
  process: ServiceProcess;
  pid(): number;
  /** Starts the process again on the same port with the same settings; resolves once /readyz is 200. */
  start(): Promise<void>;
  /** SIGKILL, then resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit (a SIGKILL after stopTimeoutMs). */
  stop(stopTimeoutMs?: number): Promise<void>;
}

export interface CommitdCluster {
  readonly instances: readonly Instance[];
  readonly schema: string;
  close(): Promise<void>;
}

/**
 * `count` instances on one schema of `store`, started one after the other
 * (each ready before the next starts, so the first owns every shard at
 * first and the later ones take their share).
 */
export async function startCommitdCluster(
  store: PostgresCluster,
  options: { count: number; schema: string; env?: Record<string, string>; echo?: boolean },
): Promise<CommitdCluster> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-cluster-'));
  const instances: Instance[] = [];
  for (let i = 0; i < options.count; i++) {
    const name = String.fromCharCode(65 + i);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    // A data directory of its own: what matters is in the store.
    const dataDir = path.join(work, `instance-${name}`);
    const env = {
      // Quiet unless the caller's environment asks for more.
      COMMITD_LOG_LEVEL: process.env.COMMITD_LOG_LEVEL ?? 'warn',
      COMMITD_STORE_URL: store.url(),
      COMMITD_STORE_SCHEMA: options.schema,
      COMMITD_ADVERTISE_URL: url,
      ...options.env,
    };
    const spawn = () =>
      spawnService({ dataDir, port, env, echo: options.echo ?? true, stopWithParent: true, readyTimeoutMs: 30_000 });
    const instance: Instance = {
      name,
      port,
      url,
      process: spawn(),
      pid: () => instance.process.child.pid as number,
      async start() {
        instance.process = spawn();
        await instance.process.ready;
      },
      async kill() {
        const p = instance.process;
        if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
        await p.exited;
      },
      async stop(stopTimeoutMs = 10_000) {
        const p = instance.process;
        if (p.child.exitCode !== null || p.child.signalCode !== null) return;
        p.child.kill('SIGCONT');
        p.child.kill('SIGTERM');
        const timer = setTimeout(() => p.child.kill('SIGKILL'), stopTimeoutMs);
        await p.exited;
        clearTimeout(timer);
      },
    };
    await instance.process.ready;
    instances.push(instance);
  }
  // A paused instance does not run the timer that stops it with its parent: whatever ends this process ends them.
  process.once('exit', () => {
    for (const instance of instances) instance.process.child.kill('SIGKILL');
  });
  return {
    instances,
    schema: options.schema,
    async close() {
      for (const instance of instances) await instance.stop();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/** What an instance says of the cluster, or null if it does not answer 200 in time. */
export async function clusterView(url: string): Promise<ClusterView | null> {
  try {
    const res = await fetch(`${url}/v1/cluster`, { signal: AbortSignal.timeout(CLUSTER_REQUEST_TIMEOUT_MS) });
    if (res.status !== 200) {
      await res.arrayBuffer();
      return null;
    }
    return (await res.json()) as ClusterView;
  } catch {
    return null;
  }
}

/** The shards an instance says it owns itself, or null when it does not answer. */
export async function ownShards(url: string): Promise<number | null> {
  const view = await clusterView(url);
  if (view === null) return null;
  return view.instances.find((i) => i.self)?.shards ?? 0;
}

/**
 * Waits until every instance answers, each says it owns shards, their own
 * counts add up to all the shards, and the counts stay so for
 * STABLE_FOR_MS: the cluster has settled (a share still moving would hand
 * transactions over during the next measurement). Returns the last views,
 * or throws after timeoutMs with them.
 */
export async function untilBalanced(instances: readonly Instance[], timeoutMs: number): Promise<ClusterView[]> {
  const deadline = performance.now() + timeoutMs;
  let views: (ClusterView | null)[] = [];
  let settled: { counts: string; since: number } | null = null;
  while (performance.now() < deadline) {
    views = await Promise.all(instances.map((i) => clusterView(i.url)));
    const owned = views.map((v) => v?.instances.find((i) => i.self)?.shards ?? 0);
    const total = views[0]?.shards;
    const balanced =
      views.every((v) => v !== null) && owned.every((n) => n > 0) && owned.reduce((a, b) => a + b, 0) === total;
    const counts = owned.join(',');
    if (!balanced) settled = null;
    else if (settled === null || settled.counts !== counts) settled = { counts, since: performance.now() };
    else if (performance.now() - settled.since >= STABLE_FOR_MS) return views as ClusterView[];
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(
    `the cluster did not settle within ${timeoutMs} ms (every instance owning shards, all shards owned, for ${STABLE_FOR_MS} ms): ${JSON.stringify(views)}`,
  );
}

/**
 * The processes of a private PostgreSQL cluster (the postmaster and its
 * children: backends, WAL writer, checkpointer…), found through /proc from
 * the postmaster.pid file: their CPU is the store's cost.
 */
export function postgresPids(store: PostgresCluster): number[] {
  const postmaster = Number(fs.readFileSync(path.join(store.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' })
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
  return [postmaster, ...children];
}

/**
 * CPU seconds used so far by the PostgreSQL cluster: the postmaster's own
 * and its reaped children's (cutime, cstime: backends that have exited),
 * plus each live child's. A child is either live or reaped, so nothing is
 * counted twice (bar the instant it is a zombie).
 */
export function postgresCpuSeconds(store: PostgresCluster): number {
  const [postmaster, ...children] = postgresPids(store);
  let total = cpuSeconds(postmaster as number, { reapedChildren: true });
  for (const pid of children) {
    try {
      total += cpuSeconds(pid);
    } catch {
      // exited between ps and /proc: the postmaster's cutime has it once reaped
    }
  }
  return total;
}

/**
 * Deadlocks PostgreSQL has detected so far, every database together
 * (pg_stat_database; a backend reports them within a second or so). Each one
 * cost a statement deadlock_timeout (1 s) of waiting, then an error.
 */
export async function postgresDeadlocks(store: PostgresCluster): Promise<number> {
  const rows = await store.query<{ n: string | null }>('SELECT sum(deadlocks) AS n FROM pg_stat_database');
  return Number(rows[0]?.n ?? 0);
}
