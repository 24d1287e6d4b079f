// npm run bench: the built service and two participants on this machine, a
// load of one-shot two-participant commits, against a baseline that does the
// same work with no coordinator (the load generator itself sends prepare to
// both participants, then commit to both, logging nothing). Coordinated and
// baseline runs alternate, so both see the same machine; the ratio of the
// two is the figure that matters on a shared, noisy host.
//
// Flags: --seconds N (per run, default 5), --rounds N (default 3),
// --clients N (default 64), --durable (participants fsync every message),
// --explicit (each transaction is a begin, then a commit call: the explicit
// path, with its forced begin and preparing records, instead of a one-shot),
// --out FILE (markdown, default BENCHMARKS.md), --no-write,
// --profile DIR (write a V8 CPU profile of the coordinator to DIR),
// --postgres (a second commitd on the PostgreSQL decision store, on a private
// PostgreSQL cluster this command starts, measured in the same rounds: SQLite
// and PostgreSQL side by side on the same machine and participants),
// --instances N (with --postgres implied: also N commitd instances sharing
// one schema of that PostgreSQL cluster (issue #13), the load spread over
// them round-robin, measured in the same rounds: SQLite, PostgreSQL with one
// instance and PostgreSQL with N, interleaved). Each run says where the time
// goes: CPU per transaction of each commitd process, of PostgreSQL (every
// process of the private cluster), of the participants and of this load
// generator.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { int, num, on, parseFlags, str } from '../src/cli/args.js';
import { type PostgresCluster, startPostgres } from '../test/support/postgres-cluster.js';
import {
  type CommitdCluster,
  postgresCpuSeconds,
  postgresDeadlocks,
  startCommitdCluster,
  untilBalanced,
} from './cluster.js';
import { closedLoop as load, percentile, post, transactionOn } from './load.js';
import { cpuSeconds, loadResult, peakRssMb, scrape, startCoordinator, startParticipants } from './processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

interface Options {
  seconds: number;
  rounds: number;
  clients: number;
  durable: boolean;
  explicit: boolean;
  out: string;
  write: boolean;
  profileDir: string | null;
  postgres: boolean;
  /** commitd instances on one PostgreSQL schema measured as a cluster; 1: none. */
  instances: number;
}

interface Run {
  /**
   * coordinated: commitd on the SQLite log; postgres: commitd on the
   * PostgreSQL store; postgres-cluster: several commitd instances on one
   * PostgreSQL schema, the load spread round-robin.
   */
  kind: 'coordinated' | 'postgres' | 'postgres-cluster' | 'baseline';
  clients: number;
  seconds: number;
  transactions: number;
  failed: number;
  tps: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Coordinator CPU (user + system) per committed transaction: every commitd process of the run together. */
  coordinatorCpuUsPerTx: number | null;
  /** Each commitd process's share of it (one entry but for a cluster). */
  instanceCpuUsPerTx: number[] | null;
  /** PostgreSQL's CPU per transaction (every process of the private cluster); null without --postgres. */
  storeCpuUsPerTx: number | null;
  /** This process's CPU (the load generator, HTTP client side) per transaction. */
  loadCpuUsPerTx: number;
  /** Participant process CPU per transaction: the same work in both kinds of run. */
  participantCpuUsPerTx: number;
  fsyncsPerTx: number | null;
  /** Deadlocks PostgreSQL detected during the run (every database); null without --postgres. */
  deadlocks: number | null;
  /**
   * Shards the run's instances took, handed over or lost during it, by kind
   * (commitd_cluster_shard_changes_total): under a steady load, none is
   * expected; a shard that moves is a takeover the load caused.
   */
  shardChanges: Record<string, number>;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    seconds: num(0.1, 3600, 5),
    rounds: int(1, 1000, 3),
    clients: int(1, 10_000, 64),
    durable: on(),
    explicit: on(),
    out: str('BENCHMARKS.md'),
    'no-write': on(),
    profile: str(),
    postgres: on(),
    instances: int(1, 8, 1),
  });
  return {
    seconds: v.seconds,
    rounds: v.rounds,
    clients: v.clients,
    durable: v.durable,
    explicit: v.explicit,
    out: v.out,
    write: !v['no-write'],
    profileDir: v.profile === undefined ? null : path.resolve(v.profile),
    postgres: v.postgres || v.instances > 1,
    instances: v.instances,
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-bench-'));
  const participants = await startParticipants(o.durable ? work : null);
  const coordinator = await startCoordinator(path.join(work, 'data'), {
    profileDir: o.profileDir,
    // Finished transactions are forgotten soon, as in a long-running deployment.
    env: { COMMITD_RETENTION_MS: '10000' },
  });
  // Room for the connections of every instance (each has a writer and a few readers).
  const cluster: PostgresCluster | null = o.postgres ? await startPostgres({ max_connections: '100' }) : null;
  const pgCoordinator =
    cluster === null
      ? null
      : await startCoordinator(path.join(work, 'data-pg'), {
          env: { COMMITD_RETENTION_MS: '10000', COMMITD_STORE_URL: cluster.url() },
        });
  const pgCluster: CommitdCluster | null =
    cluster === null || o.instances < 2
      ? null
      : await startCommitdCluster(cluster, {
          count: o.instances,
          schema: 'bench_cluster',
          env: { COMMITD_RETENTION_MS: '10000' },
        });
  // Every instance with its share of the shards before any is measured.
  if (pgCluster) await untilBalanced(pgCluster.instances, 30_000);
  const pid = coordinator.child.pid as number;
  const participantsPid = participants.child.pid as number;
  const coordinatorPool = new Pool(coordinator.url, { connections: o.clients, pipelining: 1 });
  const pgPool = pgCoordinator === null ? null : new Pool(pgCoordinator.url, { connections: o.clients, pipelining: 1 });
  const clusterPools = (pgCluster?.instances ?? []).map(
    (i) => new Pool(i.url, { connections: Math.ceil(o.clients / o.instances), pipelining: 1 }),
  );
  const participantPools = participants.urls.map((u) => new Pool(new URL(u).origin, { connections: o.clients }));
  const transactionAt = (pool: Pool) => transactionOn(pool, participants.urls, o.explicit);
  const coordinated = transactionAt(coordinatorPool);
  const onPostgres = pgPool === null ? null : transactionAt(pgPool);
  // Round-robin over the instances: transaction i goes to instance i mod N.
  const onInstances = clusterPools.map(transactionAt);
  const onCluster =
    onInstances.length === 0 ? null : (i: number) => (onInstances[i % onInstances.length] as () => Promise<boolean>)();
  let baselineSeq = 0;
  const baseline = async () => {
    const id = `bench_${process.pid}_${baselineSeq++}`;
    const message = (name: string) => JSON.stringify({ transactionId: id, participant: name, payload: null });
    const votes = await Promise.all(participantPools.map((p, i) => post(p, '/tx/prepare', message(`p${i}`))));
    if (votes.some((s) => s !== 200)) return false;
    const acks = await Promise.all(participantPools.map((p, i) => post(p, '/tx/commit', message(`p${i}`))));
    return acks.every((s) => s === 200);
  };

  const measure = async (kind: Run['kind'], clients: number): Promise<Run> => {
    const targets =
      kind === 'postgres' && pgCoordinator !== null
        ? [{ url: pgCoordinator.url, pid: pgCoordinator.child.pid as number }]
        : kind === 'postgres-cluster' && pgCluster !== null
          ? pgCluster.instances.map((i) => ({ url: i.url, pid: i.pid() }))
          : [{ url: coordinator.url, pid }];
    const scrapeAll = async () => Promise.all(targets.map((t) => scrape(t.url)));
    const before = await scrapeAll();
    const cpu0 = targets.map((t) => cpuSeconds(t.pid));
    const pcpu0 = cpuSeconds(participantsPid);
    const scpu0 = cluster === null ? 0 : postgresCpuSeconds(cluster);
    const deadlocks0 = cluster === null ? 0 : await postgresDeadlocks(cluster);
    const lcpu0 = process.cpuUsage();
    const once =
      kind === 'coordinated'
        ? coordinated
        : kind === 'postgres' && onPostgres
          ? onPostgres
          : kind === 'postgres-cluster' && onCluster
            ? onCluster
            : baseline;
    const r = await load(clients, o.seconds, once);
    const lcpu = process.cpuUsage(lcpu0);
    const cpu1 = targets.map((t) => cpuSeconds(t.pid));
    const pcpu1 = cpuSeconds(participantsPid);
    const scpu1 = cluster === null ? 0 : postgresCpuSeconds(cluster);
    const after = await scrapeAll();
    const deadlocks1 = cluster === null ? 0 : await postgresDeadlocks(cluster);
    const delta = (k: string) => after.reduce((sum, a, i) => sum + (a.get(k) ?? 0) - (before[i]?.get(k) ?? 0), 0);
    const committed = delta('commitd_transactions_finished_total{outcome="commit"}');
    const perTx = (seconds: number) => (seconds * 1e6) / Math.max(1, r.ok);
    const instanceCpu = kind !== 'baseline' ? cpu1.map((c, i) => perTx(c - (cpu0[i] as number))) : null;
    const run: Run = {
      kind,
      clients,
      seconds: o.seconds,
      transactions: r.ok,
      failed: r.failed,
      tps: r.ok / o.seconds,
      p50Ms: percentile(r.sortedMs, 0.5),
      p99Ms: percentile(r.sortedMs, 0.99),
      p999Ms: percentile(r.sortedMs, 0.999),
      // commitd's own CPU, every instance of the run together; PostgreSQL's apart.
      coordinatorCpuUsPerTx: instanceCpu === null ? null : instanceCpu.reduce((a, b) => a + b, 0),
      instanceCpuUsPerTx: instanceCpu,
      // Every run is charged what PostgreSQL did meanwhile, idle instances' leases included.
      storeCpuUsPerTx: cluster === null ? null : perTx(scpu1 - scpu0),
      participantCpuUsPerTx: perTx(pcpu1 - pcpu0),
      loadCpuUsPerTx: perTx((lcpu.user + lcpu.system) / 1e6),
      // commitd fsyncs only its SQLite log; PostgreSQL flushes its WAL itself.
      fsyncsPerTx: kind === 'coordinated' ? delta('commitd_log_fsyncs_total') / Math.max(1, committed) : null,
      deadlocks: cluster === null ? null : deadlocks1 - deadlocks0,
      shardChanges: changesOf(after, before),
    };
    console.log(format(run));
    return run;
  };

  console.log(
    `commitd bench: ${o.rounds} rounds of ${o.seconds} s, ${o.clients} clients, participants ${o.durable ? 'durable' : 'in-memory'}, ${o.explicit ? 'explicit begin + commit' : 'one-shot commits'}${o.postgres ? ', SQLite and PostgreSQL stores' : ''}${pgCluster ? `, PostgreSQL with ${o.instances} instances (round-robin)` : ''}`,
  );
  console.log('warm-up…');
  await load(o.clients, 2, coordinated);
  if (onPostgres) await load(o.clients, 2, onPostgres);
  if (onCluster) await load(o.clients, 2, onCluster);
  await load(o.clients, 1, baseline);

  // What each process costs with no load at all: the fixed part of the
  // per-transaction figures (probes, lease renewals, sweeps), charged to
  // whichever run is measuring meanwhile.
  const idle = await measureIdle(
    [
      { name: 'commitd SQLite', pid },
      ...(pgCoordinator ? [{ name: 'commitd PostgreSQL', pid: pgCoordinator.child.pid as number }] : []),
      ...(pgCluster?.instances ?? []).map((i) => ({ name: `commitd cluster ${i.name}`, pid: i.pid() })),
      { name: 'participants', pid: participantsPid },
    ],
    cluster,
  );
  console.log(
    `idle, CPU ms per second: ${Object.entries(idle)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')}`,
  );

  const runs: Run[] = [];
  for (let round = 0; round < o.rounds; round++) {
    runs.push(await measure('coordinated', o.clients));
    if (onPostgres) runs.push(await measure('postgres', o.clients));
    if (onCluster) runs.push(await measure('postgres-cluster', o.clients));
    runs.push(await measure('baseline', o.clients));
  }
  const single = [await measure('coordinated', 1), await measure('baseline', 1)];
  if (onPostgres) single.push(await measure('postgres', 1));
  if (onCluster) single.push(await measure('postgres-cluster', 1));
  const peakRss = peakRssMb(pid);

  const median = (kind: Run['kind'], f: (r: Run) => number) => {
    const xs = runs
      .filter((r) => r.kind === kind)
      .map(f)
      .sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)] as number;
  };
  const coordTps = median('coordinated', (r) => r.tps);
  const baseTps = median('baseline', (r) => r.tps);
  const postgresTps = onPostgres ? median('postgres', (r) => r.tps) : null;
  const clusterTps = onCluster ? median('postgres-cluster', (r) => r.tps) : null;
  const summary = {
    date: new Date().toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`,
    participants: o.durable ? 'durable (fsync per message)' : 'in-memory',
    coordinatedTps: coordTps,
    postgresTps,
    clusterTps,
    instances: o.instances,
    baselineTps: baseTps,
    ratio: coordTps / baseTps,
    fsyncsPerTx: median('coordinated', (r) => r.fsyncsPerTx ?? 0),
    coordinatorCpuUsPerTx: median('coordinated', (r) => r.coordinatorCpuUsPerTx ?? 0),
    coordinatorPeakRssMb: peakRss,
    singleClient: single,
    idleCpuMsPerS: idle,
    runs,
  };
  console.log(
    `\nmedian of ${o.rounds}: coordinated ${coordTps.toFixed(0)} tx/s, baseline ${baseTps.toFixed(0)} tx/s, ratio ${summary.ratio.toFixed(2)}; ` +
      `fsyncs/tx ${summary.fsyncsPerTx.toFixed(3)}; coordinator CPU ${summary.coordinatorCpuUsPerTx.toFixed(0)} µs/tx; peak RSS ${peakRss.toFixed(0)} MB`,
  );
  if (postgresTps !== null) {
    console.log(
      `store: SQLite ${coordTps.toFixed(0)} tx/s, PostgreSQL ${postgresTps.toFixed(0)} tx/s (ratio ${(postgresTps / coordTps).toFixed(2)}); ` +
        `1 client on PostgreSQL: p50 ${single[2]?.p50Ms.toFixed(2)} ms, p99 ${single[2]?.p99Ms.toFixed(2)} ms`,
    );
  }
  if (clusterTps !== null && postgresTps !== null) {
    const oneClient = single.find((r) => r.kind === 'postgres-cluster');
    console.log(
      `cluster: PostgreSQL ${o.instances} instances ${clusterTps.toFixed(0)} tx/s (ratio to 1 instance ${(clusterTps / postgresTps).toFixed(2)}); ` +
        `1 client: p50 ${oneClient?.p50Ms.toFixed(2)} ms, p99 ${oneClient?.p99Ms.toFixed(2)} ms`,
    );
  }
  console.log('\nwhere the time goes (medians over the rounds, CPU µs per transaction):');
  for (const kind of ['coordinated', 'postgres', 'postgres-cluster', 'baseline'] as const) {
    if (!runs.some((r) => r.kind === kind)) continue;
    const instances = runs.find((r) => r.kind === kind)?.instanceCpuUsPerTx?.length ?? 0;
    const each = Array.from({ length: instances }, (_, i) => median(kind, (r) => r.instanceCpuUsPerTx?.[i] ?? 0));
    const store = median(kind, (r) => r.storeCpuUsPerTx ?? 0);
    console.log(
      `${kind.padEnd(16)} ${median(kind, (r) => r.tps)
        .toFixed(0)
        .padStart(
          6,
        )} tx/s, p50 ${median(kind, (r) => r.p50Ms).toFixed(2)} ms, p99 ${median(kind, (r) => r.p99Ms).toFixed(2)} ms; ` +
        `commitd ${instances === 0 ? '–' : each.map((x) => x.toFixed(0)).join(' + ')}` +
        `${cluster === null ? '' : `, PostgreSQL ${store.toFixed(0)}`}, participants ${median(kind, (r) => r.participantCpuUsPerTx).toFixed(0)}, ` +
        `load generator ${median(kind, (r) => r.loadCpuUsPerTx).toFixed(0)}`,
    );
  }
  if (cluster !== null) {
    const all = [...runs, ...single];
    console.log(
      `PostgreSQL deadlocks detected: ${all.reduce((n, r) => n + (r.deadlocks ?? 0), 0)} over the measured runs (${
        all
          .filter((r) => r.deadlocks)
          .map((r) => `${r.kind} ${r.clients} clients: ${r.deadlocks}`)
          .join(', ') || 'none'
      }); ${await postgresDeadlocks(cluster)} since the start, warm-up included`,
    );
  }
  console.log(
    `1 client: p50 ${single[0]?.p50Ms.toFixed(2)} ms, p99 ${single[0]?.p99Ms.toFixed(2)} ms (baseline p50 ${single[1]?.p50Ms.toFixed(2)} ms, p99 ${single[1]?.p99Ms.toFixed(2)} ms)`,
  );

  await coordinatorPool.close();
  await pgPool?.close();
  for (const p of clusterPools) await p.close();
  for (const p of participantPools) await p.close();
  for (const c of [coordinator, pgCoordinator]) c?.child.kill('SIGTERM');
  participants.child.kill('SIGTERM');
  await new Promise((r) => coordinator.child.once('exit', r));
  if (pgCoordinator && pgCoordinator.child.exitCode === null) {
    await new Promise((r) => pgCoordinator.child.once('exit', r));
  }
  await pgCluster?.close();
  cluster?.destroy();
  fs.rmSync(work, { recursive: true, force: true });

  if (o.write) {
    fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(root, 'bench', 'results', 'latest.json'), `${JSON.stringify(summary, null, 2)}\n`);
    fs.writeFileSync(path.join(root, o.out), markdown(summary));
    console.log(`wrote ${o.out} and bench/results/latest.json`);
  }
}

const IDLE_MEASURE_S = 3;

/** CPU milliseconds per second of each process (and of PostgreSQL) over a few seconds with no load. */
async function measureIdle(
  processes: { name: string; pid: number }[],
  store: PostgresCluster | null,
): Promise<Record<string, number>> {
  const before = processes.map((p) => cpuSeconds(p.pid));
  const storeBefore = store === null ? 0 : postgresCpuSeconds(store);
  await new Promise((r) => setTimeout(r, IDLE_MEASURE_S * 1000));
  const idle: Record<string, number> = {};
  for (const [i, p] of processes.entries()) {
    idle[p.name] = ((cpuSeconds(p.pid) - (before[i] as number)) * 1000) / IDLE_MEASURE_S;
  }
  if (store !== null) idle.PostgreSQL = ((postgresCpuSeconds(store) - storeBefore) * 1000) / IDLE_MEASURE_S;
  return idle;
}

/** The shard changes (commitd_cluster_shard_changes_total{change=…}) between two scrapes of each instance, summed. */
function changesOf(after: Map<string, number>[], before: Map<string, number>[]): Record<string, number> {
  const changes: Record<string, number> = {};
  for (const [i, a] of after.entries()) {
    for (const [key, value] of a) {
      const change = /^commitd_cluster_shard_changes_total\{change="([^"]+)"\}$/.exec(key)?.[1];
      if (change === undefined) continue;
      const d = value - (before[i]?.get(key) ?? 0);
      if (d !== 0) changes[change] = (changes[change] ?? 0) + d;
    }
  }
  return changes;
}

function format(r: Run): string {
  const each =
    r.instanceCpuUsPerTx && r.instanceCpuUsPerTx.length > 1
      ? ` (${r.instanceCpuUsPerTx.map((x) => x.toFixed(0)).join(' + ')})`
      : '';
  const cpu =
    r.coordinatorCpuUsPerTx === null ? '' : `, coordinator CPU ${r.coordinatorCpuUsPerTx.toFixed(0)}${each} µs/tx`;
  const store =
    r.storeCpuUsPerTx === null
      ? ''
      : `, PostgreSQL CPU ${r.storeCpuUsPerTx.toFixed(0)} µs/tx${r.deadlocks ? `, PostgreSQL deadlocks ${r.deadlocks}` : ''}`;
  const moved = Object.entries(r.shardChanges)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const fsyncs = r.fsyncsPerTx === null ? '' : `, fsyncs/tx ${r.fsyncsPerTx.toFixed(3)}`;
  return (
    `${r.kind.padEnd(16)} ${String(r.clients).padStart(3)} clients: ${r.tps.toFixed(0).padStart(6)} tx/s ` +
    `(failed ${r.failed}), p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, p999 ${r.p999Ms.toFixed(2)} ms${fsyncs}${cpu}${store}, participants CPU ${r.participantCpuUsPerTx.toFixed(0)} µs/tx${moved ? `, SHARDS MOVED: ${moved}` : ''}`
  );
}

function markdown(s: {
  date: string;
  command: string;
  machine: string;
  participants: string;
  coordinatedTps: number;
  postgresTps: number | null;
  clusterTps: number | null;
  instances: number;
  baselineTps: number;
  ratio: number;
  fsyncsPerTx: number;
  coordinatorCpuUsPerTx: number;
  coordinatorPeakRssMb: number;
  singleClient: Run[];
  runs: Run[];
}): string {
  const row = (r: Run) =>
    `| ${r.kind} | ${r.clients} | ${r.tps.toFixed(0)} | ${r.failed} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${r.p999Ms.toFixed(2)} | ${r.fsyncsPerTx?.toFixed(3) ?? '–'} | ${r.coordinatorCpuUsPerTx?.toFixed(0) ?? '–'} | ${r.storeCpuUsPerTx?.toFixed(0) ?? '–'} | ${r.participantCpuUsPerTx.toFixed(0)} |`;
  return `# Benchmarks

Written by \`npm run bench\`; rerun it to reproduce. Everything runs on one
machine: the load generator, commitd (built, as a child process) and two
participants (one child process). Each transaction is a one-shot commit
(\`"commit": true\`) across two participants, its commit decision fsynced.
The baseline does the same participant work with no coordinator: the load
generator sends prepare to both participants, then commit to both, and logs
nothing. Coordinated and baseline runs alternate; the figures are medians.

- Date: ${s.date}
- Command: \`${s.command}\`
- Machine: ${s.machine}
- Participants: ${s.participants}

## Summary

| figure | value |
| --- | --- |
| coordinated throughput | ${s.coordinatedTps.toFixed(0)} tx/s |
${s.postgresTps === null ? '' : `| coordinated throughput, PostgreSQL store | ${s.postgresTps.toFixed(0)} tx/s |\n`}${s.clusterTps === null ? '' : `| coordinated throughput, PostgreSQL store, ${s.instances} instances | ${s.clusterTps.toFixed(0)} tx/s |\n`}| baseline throughput | ${s.baselineTps.toFixed(0)} tx/s |
| ratio coordinated / baseline | ${s.ratio.toFixed(2)} |
| fsyncs per committed transaction | ${s.fsyncsPerTx.toFixed(3)} |
| coordinator CPU per transaction | ${s.coordinatorCpuUsPerTx.toFixed(0)} µs |
| coordinator peak RSS | ${s.coordinatorPeakRssMb.toFixed(0)} MB |
| 1 client, coordinated: p50 / p99 | ${s.singleClient[0]?.p50Ms.toFixed(2)} ms / ${s.singleClient[0]?.p99Ms.toFixed(2)} ms |
| 1 client, baseline: p50 / p99 | ${s.singleClient[1]?.p50Ms.toFixed(2)} ms / ${s.singleClient[1]?.p99Ms.toFixed(2)} ms |

## Every run

| run | clients | tx/s | failed | p50 ms | p99 ms | p999 ms | fsyncs/tx | coordinator CPU µs/tx | PostgreSQL CPU µs/tx | participants CPU µs/tx |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${[...s.runs, ...s.singleClient].map(row).join('\n')}
${otherResults()}`;
}

/** The soak and recovery benchmarks' last results, when they have been run here, and the log of changes measured. */
function otherResults(): string {
  const soak = loadResult('soak');
  const recovery = loadResult('recovery');
  let out = '';
  const changes = path.join(root, 'bench', 'changes.md');
  if (fs.existsSync(changes)) out += `\n${fs.readFileSync(changes, 'utf8')}`;
  if (soak) {
    out += `
## Soak: memory over a long run

\`${soak.command}\` (${soak.date}): ${soak.transactions} one-shot commits in ${soak.seconds} s (${soak.tps} tx/s), ${soak.failed} failed,
finished transactions forgotten after ${soak.retentionMs} ms. Coordinator resident memory: at most ${soak.rssMaxFirstHalfMb} MB in the
first half of the run, ${soak.rssMaxSecondHalfMb} MB in the second (peak ${soak.peakRssMb} MB); decision log on disk: at most
${soak.logMaxFirstHalfMb} MB, then ${soak.logMaxSecondHalfMb} MB.
`;
  }
  if (recovery) {
    out += `
## Recovery after kill -9

\`${recovery.command}\` (${recovery.date}): killed with ${recovery.transactions} unfinished transactions (half decided commit and
unacknowledged, half undecided); after the restart, ready in ${recovery.readyAfterS} s (process start included), every participant
had its outcome after ${recovery.allFinishedAfterS} s (${recovery.committed} committed, ${recovery.aborted} aborted, ${recovery.split}
split); coordinator peak resident memory ${recovery.peakRssMb} MB.
`;
  }
  return out;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
