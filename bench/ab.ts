// npm run bench:ab -- A B [PAIRS] [FLAGS]: is build B slower than build A?
// bench/ab.sh builds both commits in worktrees and runs this with their
// directories. Both run on the same participants and under this one load
// generator (so a change to the benchmark itself cannot pass for a change to
// the service), and every measurement is taken of A and B back to back, the
// order alternating pair by pair (AB, BA, AB, …) so a drift of the machine
// falls on both alike.
//
// Each pair starts both services afresh (new processes, empty logs, a
// warm-up each) and stops them after: one process of a build can run 10–15%
// slower than another process of the same build for its whole life (the JIT's
// choices, where its memory lies), which an A/A run with one process per side
// showed as B slower in 6 pairs of 6. Fresh processes per pair make that a
// part of the noise every pair samples, not a bias one side keeps.
//
// Per pair, for each build:
//   - closed loop, --clients clients for --seconds: throughput and p50/p99;
//   - fixed rate, --rate transactions per second for --seconds: coordinator
//     CPU per transaction and p50/p99 at equal work (closed-loop CPU per
//     transaction depends on the rate the run happened to reach, see load.ts);
//   - one client for --seconds: p50, the latency of a quiet service.
// The summary gives each figure's median for A and B and the median of the
// per-pair ratios B/A, with how many pairs went each way: one pair is noise,
// a ratio every pair agrees on is not.
//
// Flags: --a DIR --b DIR (built checkouts), --pairs N (default 6),
// --seconds N (per measurement, default 5), --clients N (default 64),
// --rate N (default 300), --explicit (begin, then commit, instead of
// one-shot commits), --pin (each service on the last CPU, this process and
// the participants on the others: less migration noise on a small machine).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { int, num, on, parseFlags, str } from '../src/cli/args.js';
import { spawnService } from '../test/support/service.js';
import { closedLoop, fixedRate, type LoadResult, percentile, transactionOn } from './load.js';
import { cpuSeconds, freePort, startParticipants } from './processes.js';

/** Closed-loop load on a fresh service before it is measured: the JIT's first compilations, the log's first pages. */
const WARM_UP_S = 3;

interface Options {
  a: string;
  b: string;
  pairs: number;
  seconds: number;
  clients: number;
  ratePerS: number;
  explicit: boolean;
  pin: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    a: str(),
    b: str(),
    pairs: int(1, 100, 6),
    seconds: num(0.5, 600, 5),
    clients: int(1, 1000, 64),
    rate: num(1, 100_000, 300),
    explicit: on(),
    pin: on(),
  });
  if (v.a === undefined || v.b === undefined) throw new Error('--a DIR and --b DIR (built checkouts) are required');
  return {
    a: path.resolve(v.a),
    b: path.resolve(v.b),
    pairs: v.pairs,
    seconds: v.seconds,
    clients: v.clients,
    ratePerS: v.rate,
    explicit: v.explicit,
    pin: v.pin,
  };
}

type Measure = 'closed' | 'rate' | 'single';

interface Figures {
  tps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerTx: number;
  failed: number;
  late: number;
}

interface Side {
  name: 'A' | 'B';
  dir: string;
  results: Record<Measure, Figures[]>;
}

/** One side's service, running for one pair. */
interface Running {
  side: Side;
  pid: number;
  transaction: (i: number) => Promise<boolean>;
  close: () => Promise<void>;
}

/** Pins a process and all its threads to the given CPUs (taskset, util-linux). */
function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

async function startService(side: Side, dataDir: string, participantUrls: string[], o: Options): Promise<Running> {
  const script = path.join(side.dir, 'dist', 'src', 'main.js');
  if (!fs.existsSync(script)) throw new Error(`${script} is missing: build ${side.dir} first`);
  const service = spawnService({
    script,
    dataDir,
    port: await freePort(),
    // Finished transactions are forgotten soon, as in a long-running deployment.
    env: { COMMITD_LOG_LEVEL: 'warn', COMMITD_RETENTION_MS: '10000' },
    stopWithParent: true,
    echo: true,
  });
  const url = await service.ready;
  const pool = new Pool(url, { connections: o.clients, pipelining: 1 });
  const transaction = transactionOn(pool, participantUrls, o.explicit);
  return {
    side,
    pid: service.child.pid as number,
    transaction,
    close: async () => {
      await pool.close();
      service.child.kill('SIGTERM');
      await service.exited;
    },
  };
}

async function measure(service: Running, kind: Measure, o: Options): Promise<Figures> {
  const cpu0 = cpuSeconds(service.pid);
  let r: LoadResult & { startedLate?: number };
  if (kind === 'closed') r = await closedLoop(o.clients, o.seconds, service.transaction);
  else if (kind === 'single') r = await closedLoop(1, o.seconds, service.transaction);
  else r = await fixedRate(o.ratePerS, o.seconds, o.clients * 4, service.transaction);
  const cpu = cpuSeconds(service.pid) - cpu0;
  const figures: Figures = {
    tps: r.ok / r.elapsedS,
    p50Ms: percentile(r.sortedMs, 0.5),
    p99Ms: percentile(r.sortedMs, 0.99),
    cpuUsPerTx: (cpu * 1e6) / Math.max(1, r.ok),
    failed: r.failed,
    late: r.startedLate ?? 0,
  };
  service.side.results[kind].push(figures);
  return figures;
}

function describe(kind: Measure, f: Figures): string {
  const late = f.late > 0 ? `, ${f.late} started late` : '';
  const failed = f.failed > 0 ? `, FAILED ${f.failed}` : '';
  return `${kind.padEnd(6)} ${f.tps.toFixed(0).padStart(5)} tx/s, p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms, CPU ${f.cpuUsPerTx.toFixed(0)} µs/tx${late}${failed}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** One summary line: A's and B's medians, the median ratio B/A over pairs, and how many pairs had B above/below A. */
function compare(label: string, a: number[], b: number[], higherIsBetter: boolean): string {
  const ratios = a.map((x, i) => (b[i] as number) / x);
  const above = ratios.filter((r) => r > 1).length;
  const below = ratios.filter((r) => r < 1).length;
  const better = higherIsBetter ? above : below;
  const worse = higherIsBetter ? below : above;
  const digits = median(a) < 10 ? 2 : 0;
  return (
    `${label.padEnd(34)} A ${median(a).toFixed(digits).padStart(7)}  B ${median(b).toFixed(digits).padStart(7)}  ` +
    `B/A ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}; ` +
    `B better in ${better}, worse in ${worse} of ${ratios.length})`
  );
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-ab-run-'));
  const participants = await startParticipants(null);
  const sides: readonly [Side, Side] = [
    { name: 'A', dir: o.a, results: { closed: [], rate: [], single: [] } },
    { name: 'B', dir: o.b, results: { closed: [], rate: [], single: [] } },
  ];
  const cpus = os.cpus().length;
  const pinning = o.pin && cpus > 1;
  const serviceCpus = String(cpus - 1);
  const otherCpus = cpus === 2 ? '0' : `0-${cpus - 2}`;
  if (pinning) {
    pin(process.pid, otherCpus);
    pin(participants.child.pid as number, otherCpus);
  }
  console.log(
    `commitd A/B: ${o.pairs} pairs, ${o.seconds} s per measurement, ${o.clients} clients, fixed rate ${o.ratePerS} tx/s, ` +
      `${o.explicit ? 'explicit begin + commit' : 'one-shot commits'}${pinning ? `, services pinned to CPU ${serviceCpus}` : ''}`,
  );
  console.log(`A = ${o.a}\nB = ${o.b}`);

  for (let pair = 1; pair <= o.pairs; pair++) {
    // AB, BA, AB, …: what the machine does over a pair falls on both orders.
    const order = pair % 2 === 1 ? sides : ([sides[1], sides[0]] as const);
    const running: Running[] = [];
    for (const side of order) {
      const service = await startService(side, path.join(work, `${pair}-${side.name}`), participants.urls, o);
      if (pinning) pin(service.pid, serviceCpus);
      running.push(service);
    }
    for (const service of running) await closedLoop(o.clients, WARM_UP_S, service.transaction);
    for (const kind of ['closed', 'rate', 'single'] as const) {
      for (const service of running) {
        console.log(`pair ${pair} ${service.side.name} ${describe(kind, await measure(service, kind, o))}`);
      }
    }
    for (const service of running) await service.close();
  }

  const [a, b] = sides;
  const of = (s: Side, kind: Measure, f: (x: Figures) => number) => s.results[kind].map(f);
  console.log(`\nmedians over ${o.pairs} pairs, and B/A pair by pair:`);
  console.log(
    compare(
      `throughput, ${o.clients} clients (tx/s)`,
      of(a, 'closed', (x) => x.tps),
      of(b, 'closed', (x) => x.tps),
      true,
    ),
  );
  console.log(
    compare(
      `p50, ${o.clients} clients (ms)`,
      of(a, 'closed', (x) => x.p50Ms),
      of(b, 'closed', (x) => x.p50Ms),
      false,
    ),
  );
  console.log(
    compare(
      `p99, ${o.clients} clients (ms)`,
      of(a, 'closed', (x) => x.p99Ms),
      of(b, 'closed', (x) => x.p99Ms),
      false,
    ),
  );
  console.log(
    compare(
      `CPU at ${o.ratePerS} tx/s (µs/tx)`,
      of(a, 'rate', (x) => x.cpuUsPerTx),
      of(b, 'rate', (x) => x.cpuUsPerTx),
      false,
    ),
  );
  console.log(
    compare(
      `p50 at ${o.ratePerS} tx/s (ms)`,
      of(a, 'rate', (x) => x.p50Ms),
      of(b, 'rate', (x) => x.p50Ms),
      false,
    ),
  );
  console.log(
    compare(
      `p99 at ${o.ratePerS} tx/s (ms)`,
      of(a, 'rate', (x) => x.p99Ms),
      of(b, 'rate', (x) => x.p99Ms),
      false,
    ),
  );
  console.log(
    compare(
      'p50, 1 client (ms)',
      of(a, 'single', (x) => x.p50Ms),
      of(b, 'single', (x) => x.p50Ms),
      false,
    ),
  );
  const failed = sides.flatMap((s) => Object.values(s.results).flat()).reduce((n, f) => n + f.failed, 0);
  console.log(`failed transactions: ${failed}`);

  participants.child.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
  if (failed > 0) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
