// npm run chaos:cluster: the multi-instance chaos run (issue #13). A private
// PostgreSQL cluster started here, N commitd instances sharing one store on
// it, three durable participants, all as real processes, and a load of
// transactions sent round-robin through every instance (one-shot commits and
// explicit begin/enlist/commit/abort flows whose calls land on instances that
// do not own the transaction, so they are forwarded). Faults from a seeded
// schedule: instances SIGKILLed (and started again on the same port),
// instances stopped with SIGSTOP for longer than their lease (then SIGCONT),
// PostgreSQL restarted, participants SIGKILLed. When the time is up the
// faults stop, everything is left to settle, and the checker of npm run chaos
// compares the participants' files, the clients' answers and the outcomes,
// and asks every instance for every transaction: each must agree.
//
// Flags: --seconds N (load and faults, default 60), --seed N (default: drawn
// and printed), --instances N (default 3), --clients N (concurrent client
// loops, default 12), --lease-ms N (COMMITD_LEASE_MS, default 1500),
// --no-fraction F (share of prepares a participant votes no on, default
// 0.05), --instance-fault-ms MIN,MAX (pause between instance faults, default
// 1000,6000), --kill-fraction F (share of instance faults that are SIGKILLs,
// the rest are pauses; default 0.5), --concurrent-instance-faults N (that many
// instance faulters at once, default 1), --pause-ms MIN,MAX (how long an instance
// stays stopped; default 2000,4500, the minimum must pass --lease-ms),
// --pg-restart-ms MIN,MAX (pause between PostgreSQL restarts, default
// 8000,20000), --participant-kill-ms MIN,MAX (default 3000,10000),
// --restart-pause-ms MIN,MAX (default 50,1000), --request-timeout-ms N (a
// client's wait for one answer before it tries the next instance, default
// 3000), --settle-timeout-s N (default 120), --keep (keep the work directory;
// it is always kept after a violation).
//
// Minimums (the run goes on past --seconds until they are reached, for at most
// --max-seconds in all): --min-instance-kills N, --min-instance-pauses N,
// --min-pg-restarts N, --min-answers N, --min-each-outcome N.
//
// Without PostgreSQL (test/support/postgres-cluster.ts: postgresAvailable())
// it prints why and exits 3. The seed fixes the fault schedule, not the
// interleaving.
//
// The last line is the summary:
// cluster-chaos: seconds=… instances=… transactions=… committed=… aborted=… instance_kills=… instance_pauses=… pg_restarts=… participant_kills=… violations=… in_doubt=… seed=… …

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { int, num, on, parseFlags, range } from '../src/cli/args.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../test/support/postgres-cluster.js';
import { Rng } from '../test/support/rng.js';
import { MAIN } from '../test/support/service.js';
import { judge } from './chaos-check.js';
import {
  endFaults,
  type Faults,
  killAndRestart,
  participantKiller,
  sleepUntilOrEnd,
  startFaults,
} from './chaos-faults.js';
import {
  Budget,
  type Call,
  CLIENT_GIVE_UP_MS,
  type Client,
  type ClientRecord,
  callUntilAnswered,
  decide,
  newLoadStats,
  oneShot,
  recordOf,
  unexpected,
} from './chaos-load.js';
import {
  coordinatorLaunch,
  durableParticipants,
  guardRun,
  HOST,
  killAllChildren,
  PARTICIPANT,
  participantsOf,
  runMain,
  runtimeViolations,
  Supervised,
  sleep,
  stablePort,
} from './chaos-processes.js';
import { drainAndSettle, eachLimited, type Get, getFrom, toView, type View } from './chaos-settle.js';

// Limits: every loop below is bounded by one of these, in count or in time.
const MAX_SECONDS = 24 * 3600;
const MAX_CLIENTS = 256;
const MAX_INSTANCES = 9;
const PARTICIPANT_COUNT = 3;
/** After the faults stop, how long the client loops may take to get their last answers. */
const CLIENT_DRAIN_MS = CLIENT_GIVE_UP_MS + 30_000;
const CHECK_CONNECTIONS = 16;
/** After settling, how long the instances may take to agree on who owns every shard. */
const CLUSTER_VIEW_TIMEOUT_MS = 30_000;
/** An instance's read of one transaction at the end: retried on 503 or no answer this many times. */
const VIEW_ATTEMPTS = 20;
const STORE_SCHEMA = 'chaos';
/** A line of /metrics with a cluster counter: its kind, its label's value, its count. */
const CLUSTER_COUNTER = /^commitd_cluster_(shard_changes|forwarded_calls)_total\{\w+="([^"]+)"\} (\d+)/gm;
/** How often instances that stopped themselves are looked for. */
const KEEPER_INTERVAL_MS = 250;
const STORE_DATABASE = 'commitd';
/** The flows of a client's logical transaction, and their shares of the load. */
const FLOWS = [
  ['one-shot', 0.4],
  ['begin-commit', 0.3],
  ['begin-abort', 0.15],
  ['begin-enlist-commit', 0.15],
] as const;
type Flow = (typeof FLOWS)[number][0];

interface Options {
  seconds: number;
  maxSeconds: number;
  seed: number;
  instances: number;
  clients: number;
  leaseMs: number;
  noFraction: number;
  instanceFaultMs: [number, number];
  killFraction: number;
  concurrentInstanceFaults: number;
  pauseMs: [number, number];
  pgRestartMs: [number, number];
  participantKillMs: [number, number];
  restartPauseMs: [number, number];
  requestTimeoutMs: number;
  settleTimeoutMs: number;
  keep: boolean;
  minInstanceKills: number;
  minInstancePauses: number;
  minPgRestarts: number;
  minAnswers: number;
  minEachOutcome: number;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    seconds: int(1, MAX_SECONDS, 60),
    'max-seconds': int(1, MAX_SECONDS),
    seed: int(0, 2 ** 31 - 1),
    instances: int(1, MAX_INSTANCES, 3),
    clients: int(1, MAX_CLIENTS, 12),
    'lease-ms': int(100, 600_000, 1500),
    'no-fraction': num(0, 1, 0.05),
    'instance-fault-ms': range(3_600_000, [1000, 6000]),
    'kill-fraction': num(0, 1, 0.5),
    'concurrent-instance-faults': int(1, MAX_INSTANCES, 1),
    'pause-ms': range(3_600_000, [2000, 4500]),
    'pg-restart-ms': range(3_600_000, [8000, 20_000]),
    'participant-kill-ms': range(3_600_000, [3000, 10_000]),
    'restart-pause-ms': range(3_600_000, [50, 1000]),
    'request-timeout-ms': int(100, 600_000, 3000),
    'settle-timeout-s': int(1, 3600, 120),
    keep: on(),
    'min-instance-kills': int(0, 10_000, 0),
    'min-instance-pauses': int(0, 10_000, 0),
    'min-pg-restarts': int(0, 10_000, 0),
    'min-answers': int(0, 10_000_000, 0),
    'min-each-outcome': int(0, 10_000_000, 0),
  });
  const maxSeconds = v['max-seconds'] ?? v.seconds;
  if (maxSeconds < v.seconds) throw new Error('--max-seconds must be at least --seconds');
  if (v['pause-ms'][0] <= v['lease-ms']) throw new Error('--pause-ms must be longer than --lease-ms: its minimum');
  return {
    seconds: v.seconds,
    maxSeconds,
    seed: v.seed ?? Math.floor(Math.random() * 2 ** 31),
    instances: v.instances,
    clients: v.clients,
    leaseMs: v['lease-ms'],
    noFraction: v['no-fraction'],
    instanceFaultMs: v['instance-fault-ms'],
    killFraction: v['kill-fraction'],
    concurrentInstanceFaults: v['concurrent-instance-faults'],
    pauseMs: v['pause-ms'],
    pgRestartMs: v['pg-restart-ms'],
    participantKillMs: v['participant-kill-ms'],
    restartPauseMs: v['restart-pause-ms'],
    requestTimeoutMs: v['request-timeout-ms'],
    settleTimeoutMs: v['settle-timeout-s'] * 1000,
    keep: v.keep,
    minInstanceKills: v['min-instance-kills'],
    minInstancePauses: v['min-instance-pauses'],
    minPgRestarts: v['min-pg-restarts'],
    minAnswers: v['min-answers'],
    minEachOutcome: v['min-each-outcome'],
  };
}

// ---------------------------------------------------------------------------
// Faults

/**
 * SIGKILLs (then starts again) or pauses an instance, one at a time; with
 * --concurrent-instance-faults N, N of these run, each on its own stream, and
 * two instances may be down or stopped at once (never the same twice at
 * once: exclusively). Before a kill, the victim's cluster counters are read (a restart
 * starts them from zero).
 */
async function instanceFaulter(
  o: Options,
  stream: number,
  instances: Supervised[],
  counters: ClusterCounters,
  faults: Faults,
): Promise<void> {
  const rng = Rng.stream(o.seed, stream);
  const maxFaults = o.maxSeconds * 5;
  for (let n = 0; n < maxFaults && (await sleepUntilOrEnd(rng.between(o.instanceFaultMs), faults)); n++) {
    const i = rng.int(0, instances.length - 1);
    const victim = instances[i] as Supervised;
    await victim.exclusively(async () => {
      if (rng.chance(o.killFraction)) {
        await counters.add(i);
        await killAndRestart(victim, rng, o.restartPauseMs, 0.15);
      } else {
        await victim.pause(rng.between(o.pauseMs));
      }
    });
  }
}

/**
 * What the instances say they did as a cluster, summed over their lives:
 * shards taken (by why), handed over and lost, calls forwarded (by result),
 * from their /metrics. A lower bound: an instance that stopped itself takes
 * its counts with it.
 */
class ClusterCounters {
  readonly totals = new Map<string, number>();

  constructor(private readonly gets: readonly Get[]) {}

  /** Adds instance i's counters (read just before it is killed or stopped). */
  async add(i: number): Promise<void> {
    const reply = await (this.gets[i] as Get)('/metrics').catch(() => null);
    if (reply?.status !== 200 || typeof reply.body !== 'string') return;
    for (const m of reply.body.matchAll(CLUSTER_COUNTER)) {
      const key = `${m[1]}.${m[2]}`;
      this.totals.set(key, (this.totals.get(key) ?? 0) + Number(m[3]));
    }
  }

  /** `shard_changes=owner-gone:3,… forwarded_calls=answered:120,…` */
  summary(): string {
    return ['shard_changes', 'forwarded_calls']
      .map((kind) => {
        const parts = [...this.totals].filter(([k]) => k.startsWith(`${kind}.`));
        const text = parts.map(([k, n]) => `${k.slice(kind.length + 1)}:${n}`).join(',');
        return `${kind}=${text || 'none'}`;
      })
      .join(' ');
  }
}

/**
 * Starts again, as an orchestrator would, an instance that stopped itself:
 * commitd exits (code 4) when it cannot use its store, at start or on a
 * failed write, and a PostgreSQL restart may do that. Such exits are counted
 * (store_exits); any other exit of its own is a violation (Supervised).
 */
async function instanceKeeper(instances: Supervised[], faults: Faults): Promise<void> {
  while (await sleepUntilOrEnd(KEEPER_INTERVAL_MS, faults)) {
    for (const x of instances) {
      if (!x.alive) await x.exclusively(async () => (x.alive ? undefined : await x.start()));
    }
  }
}

/** commitd's exit when its decision store fails (src/serve.ts: exit 4), at start or while running. */
const storeExit = (code: number | null, output: string) =>
  code === 4 && /commitd: stopping:|cannot use the decision store/.test(output);

/** Restarts PostgreSQL (fast shutdown: every session ends, what is committed or prepared stays). */
async function postgresRestarter(
  o: Options,
  cluster: PostgresCluster,
  faults: Faults,
  counts: { pgRestarts: number },
): Promise<void> {
  const rng = Rng.stream(o.seed, 3);
  const maxRestarts = o.maxSeconds;
  while (counts.pgRestarts < maxRestarts && (await sleepUntilOrEnd(rng.between(o.pgRestartMs), faults))) {
    await cluster.restart();
    counts.pgRestarts++;
  }
}

// ---------------------------------------------------------------------------
// Load

function pickFlow(rng: Rng): Flow {
  let r = rng.next();
  for (const [flow, share] of FLOWS) {
    r -= share;
    if (r < 0) return flow;
  }
  return 'one-shot';
}

/**
 * Begin (with an idempotency key: a retry on another instance must name the
 * same transaction), then, for begin-enlist-commit, enlist the last
 * participant, then commit or abort: each call on the next instance in turn.
 */
async function explicitFlow(client: Client, key: string, flow: Flow, urls: readonly string[]): Promise<ClientRecord> {
  const budget = new Budget();
  const all = participantsOf(urls, key);
  const enlisted = flow === 'begin-enlist-commit' ? all.slice(-1) : [];
  const begin: Call = {
    method: 'POST',
    path: '/v1/transactions',
    body: JSON.stringify({ participants: all.slice(0, all.length - enlisted.length), idempotencyKey: key }),
  };
  let id: string | null = null;
  while (id === null && !budget.spent) {
    const reply = await callUntilAnswered(client, begin, budget);
    if (reply === null) break;
    if ((reply.status === 201 || reply.status === 200) && typeof reply.body?.id === 'string') {
      id = reply.body.id as string;
      budget.idsSeen.add(id);
    } else {
      unexpected(client, key, begin, reply);
      await sleep(client.rng.between([20, 100]));
    }
  }
  if (id === null) return recordOf(key, flow, budget, null);
  for (const participant of enlisted) {
    const enlist: Call = {
      method: 'POST',
      path: `/v1/transactions/${id}/participants`,
      body: JSON.stringify(participant),
    };
    for (let done = false; !done && !budget.spent; ) {
      const reply = await callUntilAnswered(client, enlist, budget);
      if (reply === null) break;
      // 409: no longer active (aborted: its deadline, or its owner died undecided); the commit will say so.
      done = reply.status === 200 || reply.status === 201 || reply.status === 409;
      if (!done) {
        unexpected(client, key, enlist, reply);
        await sleep(client.rng.between([20, 100]));
      }
    }
  }
  const kind = flow === 'begin-abort' ? 'abort' : 'commit';
  const decision: Call = { method: 'POST', path: `/v1/transactions/${id}/${kind}` };
  return recordOf(key, flow, budget, await decide(client, key, kind, decision, budget));
}

async function clientLoop(
  loop: number,
  o: Options,
  client: Client,
  urls: readonly string[],
  faults: Faults,
  records: ClientRecord[],
): Promise<void> {
  const maxLogical = o.maxSeconds * 10_000;
  for (let n = 0; n < maxLogical && !faults.over; n++) {
    const key = `cluster-chaos-${o.seed}-${loop}-${n}`;
    const flow = pickFlow(client.rng);
    records.push(
      flow === 'one-shot'
        ? await oneShot(client, key, { participants: participantsOf(urls, key) })
        : await explicitFlow(client, key, flow, urls),
    );
  }
}

/** Each call of a client on the next instance: round-robin, from a different start for each client. */
function roundRobin(pools: readonly Pool[], start: number): () => Pool {
  let next = start;
  return () => pools[next++ % pools.length] as Pool;
}

// ---------------------------------------------------------------------------
// Reading every instance

/** A Get on every instance in turn; one that does not answer is skipped for the next. */
function anyInstance(pools: readonly Pool[]): Get {
  const gets = pools.map(getFrom);
  let next = 0;
  return async (pathname) => {
    let lastError: unknown = null;
    for (let tried = 0; tried < gets.length; tried++) {
      try {
        return await (gets[next++ % gets.length] as Get)(pathname);
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };
}

/** One instance's GET /v1/transactions/{id} for every id: a View, or what came instead. */
async function viewsOf(get: Get, ids: readonly string[]): Promise<Map<string, View | string>> {
  const views = new Map<string, View | string>();
  await eachLimited(ids, async (id) => {
    let last = 'no answer';
    for (let attempt = 0; attempt < VIEW_ATTEMPTS; attempt++) {
      const reply = await get(`/v1/transactions/${id}`).catch(() => null);
      if (reply?.status === 200) {
        views.set(id, toView(reply.body));
        return;
      }
      last = reply === null ? 'no answer' : `HTTP ${reply.status}`;
      if (reply?.status === 404) break;
      await sleep(100);
    }
    views.set(id, last);
  });
  return views;
}

interface ClusterView {
  readonly self: string;
  /** How many shards there are. */
  readonly shards: number;
  readonly instances: { id: string; url: string; shards: number }[];
}

/**
 * Waits (bounded) until every instance's GET /v1/cluster has every shard
 * owned by an instance it lists, and lists every instance's URL. Returns what is still wrong, or
 * null; 'no cluster API' when instances answer 404 (a commitd without the
 * multi-instance mode).
 */
async function clusterAgreement(gets: readonly Get[], urls: readonly string[]): Promise<string | null> {
  const deadline = Date.now() + CLUSTER_VIEW_TIMEOUT_MS;
  let wrong: string | null = 'not asked';
  while (wrong !== null && Date.now() < deadline) {
    const problems: string[] = [];
    for (const [i, get] of gets.entries()) {
      const reply = await get('/v1/cluster').catch(() => null);
      if (reply?.status === 404) return 'no cluster API';
      if (reply?.status !== 200) {
        problems.push(`instance ${i}: ${reply === null ? 'no answer' : `HTTP ${reply.status}`}`);
        continue;
      }
      const view = reply.body as ClusterView;
      const owned = view.instances.reduce((n, x) => n + x.shards, 0);
      const listed = new Set(view.instances.map((x) => x.url));
      const absent = urls.filter((u) => !listed.has(u));
      if (owned !== view.shards) {
        problems.push(`instance ${i} (${view.self}): ${owned} of ${view.shards} shards owned by instances it lists`);
      }
      if (absent.length > 0) problems.push(`instance ${i} (${view.self}): does not list ${absent.join(', ')}`);
    }
    wrong = problems.length === 0 ? null : problems.join('; ');
    if (wrong !== null) await sleep(250);
  }
  return wrong;
}

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  const unavailable = postgresAvailable();
  if (unavailable !== null) {
    console.log(`cluster-chaos: skipped: PostgreSQL is needed and ${unavailable}`);
    return 3;
  }
  for (const f of [MAIN, PARTICIPANT]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  }
  // A hard bound on the whole run, whatever hangs: the load, draining the
  // clients, settling, reading every transaction on every instance, stopping.
  guardRun(
    'cluster-chaos',
    o.maxSeconds * 1000 + CLIENT_DRAIN_MS + o.settleTimeoutMs + (o.instances + 1) * o.maxSeconds * 1000 + 5 * 60_000,
  );
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-cluster-chaos-'));
  const startedAt = Date.now();
  const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(0)}s`;
  console.error(
    `cluster-chaos: work directory ${work}, seed ${o.seed}, ${o.instances} instances, ${o.seconds} s of load and faults`,
  );

  const cluster = await startPostgres({ max_connections: '200' });
  let keepWork = o.keep;
  const pools: Pool[] = [];
  const checkPools: Pool[] = [];
  const instances: Supervised[] = [];
  try {
    await cluster.createDatabase(STORE_DATABASE);
    const instanceUrls: string[] = [];
    for (let i = 0; i < o.instances; i++) {
      const port = await stablePort();
      const url = `http://${HOST}:${port}`;
      const env = {
        COMMITD_STORE_URL: cluster.url(STORE_DATABASE),
        COMMITD_STORE_SCHEMA: STORE_SCHEMA,
        COMMITD_ADVERTISE_URL: url,
        COMMITD_LEASE_MS: String(o.leaseMs),
      };
      const launch = coordinatorLaunch(port, path.join(work, `instance-${i}`), env);
      const log = path.join(work, `instance-${i}.log`);
      instances.push(new Supervised(`instance ${i} (${url})`, launch, log, storeExit));
      instanceUrls.push(url);
      pools.push(new Pool(url, { connections: o.clients, pipelining: 1 }));
      checkPools.push(new Pool(url, { connections: CHECK_CONNECTIONS, pipelining: 1 }));
    }
    const participants = await durableParticipants(work, PARTICIPANT_COUNT, o.noFraction);
    // The first instance alone creates the schema; the others join it.
    await instances[0]?.start();
    await Promise.all([...instances.slice(1).map((x) => x.start()), ...participants.processes.map((p) => p.start())]);

    // Load and faults.
    const { faults, end } = startFaults();
    const faultsStartedAt = Date.now();
    const records: ClientRecord[] = [];
    const stats = newLoadStats();
    const counts = { pgRestarts: 0 };
    const counters = new ClusterCounters(checkPools.map(getFrom));
    const sum = (of: (x: Supervised) => number, xs: Supervised[]) => xs.reduce((n, x) => n + of(x), 0);
    const kills = () => sum((x) => x.kills, instances);
    const pauses = () => sum((x) => x.pauses, instances);
    const storeExits = () => sum((x) => x.toleratedExits, instances);
    const participantKills = () => sum((x) => x.kills, participants.processes);
    const told = (t: 'commit' | 'abort' | null) => records.filter((r) => r.told === t).length;
    const progress = setInterval(() => {
      console.error(
        `cluster-chaos progress: t=${elapsed()} answers=${records.length} (commit ${told('commit')}, abort ${told('abort')}) ` +
          `instance_kills=${kills()} instance_pauses=${pauses()} pg_restarts=${counts.pgRestarts} ` +
          `participant_kills=${participantKills()} store_exits=${storeExits()} refused_reset_or_timeout=${stats.networkErrors} unavailable=${stats.unavailable}`,
      );
    }, 10_000);
    const missing = (): string | null => {
      const short: string[] = [];
      const atLeast = (what: string, n: number, min: number) => n < min && short.push(`${what} ${n} < ${min}`);
      atLeast('instance_kills', kills(), o.minInstanceKills);
      atLeast('instance_pauses', pauses(), o.minInstancePauses);
      atLeast('pg_restarts', counts.pgRestarts, o.minPgRestarts);
      atLeast('answers', told('commit') + told('abort'), o.minAnswers);
      atLeast('commit answers', told('commit'), o.minEachOutcome);
      atLeast('abort answers', told('abort'), o.minEachOutcome);
      return short.length === 0 ? null : short.join(', ');
    };
    const faultsEnd = endFaults('cluster-chaos', o, end, missing);
    const faulters = [
      // The first on stream 1, as with one faulter, so a seed's schedule stays.
      ...Array.from({ length: o.concurrentInstanceFaults }, (_, k) =>
        instanceFaulter(o, k === 0 ? 1 : 10 + k, instances, counters, faults),
      ),
      instanceKeeper(instances, faults),
      postgresRestarter(o, cluster, faults, counts),
      participantKiller(o, participants.processes, faults),
    ];
    const loops = Array.from({ length: o.clients }, (_, i) => {
      const client: Client = {
        pick: roundRobin(pools, i),
        rng: Rng.stream(o.seed, 100 + i),
        stats,
        requestTimeoutMs: o.requestTimeoutMs,
      };
      return clientLoop(i, o, client, participants.urls, faults, records);
    });
    await faultsEnd;
    const faultSeconds = (Date.now() - faultsStartedAt) / 1000;
    const unreached = missing();
    if (unreached !== null) console.error(`cluster-chaos: minimums not reached within ${o.maxSeconds} s: ${unreached}`);
    await Promise.all(faulters);
    clearInterval(progress);

    const { settled, outcomes, ids } = await drainAndSettle({
      label: 'cluster-chaos',
      elapsed,
      loops,
      drainMs: CLIENT_DRAIN_MS,
      ensureUp: async () => {
        for (const x of [...instances, ...participants.processes]) if (!x.alive) await x.start();
      },
      files: participants.files,
      records,
      get: anyInstance(checkPools),
      settleTimeoutMs: o.settleTimeoutMs,
    });
    console.error(`cluster-chaos: t=${elapsed()} reading them on each of ${o.instances} instances`);
    const instanceViews = [];
    for (const [i, pool] of checkPools.entries()) {
      instanceViews.push({ label: `instance ${i}`, views: await viewsOf(getFrom(pool), ids) });
    }
    const clusterWrong = await clusterAgreement(checkPools.map(getFrom), instanceUrls);
    if (clusterWrong === 'no cluster API') {
      console.error('cluster-chaos: note: the instances answer 404 for /v1/cluster (no multi-instance mode)');
    } else if (clusterWrong !== null) {
      runtimeViolations.push({
        kind: 'cluster-view',
        tx: null,
        detail: `after ${CLUSTER_VIEW_TIMEOUT_MS} ms the instances do not agree on the shards: ${clusterWrong}`,
      });
    }

    // Stop cleanly; the files are complete once the participants are gone.
    for (const i of instances.keys()) await counters.add(i);
    for (const [i, x] of instances.entries()) {
      const code = await x.kill('SIGTERM');
      if (code !== 0) {
        runtimeViolations.push({
          kind: 'unclean-stop',
          tx: null,
          detail: `instance ${i} exited ${code} on SIGTERM; last output:\n${x.tail.lines(30)}`,
        });
      }
    }
    for (const p of participants.processes) await p.kill('SIGTERM');

    const result = judge(participants.files, { records, settled, outcomes, instanceViews });
    const { violations, replays } = result;
    const inDoubt = new Set(
      replays.flatMap((r) => [...r.txs].filter(([, t]) => t.state === 'prepared').map(([id]) => id)),
    );
    const flows = FLOWS.map(([flow]) => `${flow}:${records.filter((r) => r.flow === flow).length}`).join(',');
    console.log(
      `cluster-chaos: seconds=${o.seconds} fault_seconds=${faultSeconds.toFixed(0)} minimums=${unreached === null ? 'reached' : 'missed'} ` +
        `instances=${o.instances} transactions=${result.transactions} committed=${result.committed} aborted=${result.aborted} ` +
        `instance_kills=${kills()} instance_pauses=${pauses()} pg_restarts=${counts.pgRestarts} participant_kills=${participantKills()} ` +
        `store_exits=${storeExits()} ${counters.summary()} violations=${violations.length} in_doubt=${inDoubt.size} seed=${o.seed} clients=${o.clients} lease_ms=${o.leaseMs} ` +
        `logical=${records.length} told_commit=${told('commit')} told_abort=${told('abort')} gave_up=${told(null)} flows=${flows} ` +
        `refused_reset_or_timeout=${stats.networkErrors} unavailable=${stats.unavailable} ` +
        `unknown_id_aborts=${replays.reduce((n, r) => n + r.unknownAborts, 0)} wall=${elapsed()}`,
    );
    keepWork ||= violations.length > 0;
    return violations.length > 0 ? 1 : 0;
  } catch (error) {
    keepWork = true;
    for (const x of instances) console.error(`cluster-chaos: ${x.label} output (last lines):\n${x.tail.lines(30)}`);
    throw error;
  } finally {
    killAllChildren();
    for (const pool of [...pools, ...checkPools]) await pool.destroy().catch(() => {});
    if (keepWork) {
      // PostgreSQL's own log (startPostgres keeps it next to its data directory), before it goes.
      const pgLog = path.join(path.dirname(cluster.dataDir), 'postgres.log');
      if (fs.existsSync(pgLog)) fs.copyFileSync(pgLog, path.join(work, 'postgres.log'));
    }
    cluster.destroy();
    if (keepWork)
      console.error(
        `cluster-chaos: work directory kept: ${work} (instance-N.log: each instance's output; postgres.log)`,
      );
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

runMain('cluster-chaos', main);
