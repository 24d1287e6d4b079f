// npm run chaos: the built coordinator and three durable participants as real
// processes, a load of one-shot commits, and a killer that SIGKILLs them at
// random moments and starts them again. When the time is up the faults stop,
// everything is left to settle, and a checker compares what the participants
// durably did (their own files), what clients were told, and what the
// coordinator reports. Any disagreement is a violation: the run prints it and
// exits 1.
//
// Flags: --seconds N (load and faults, default 60), --seed N (default: drawn
// and printed), --clients N (concurrent client loops, default 16),
// --no-fraction F (share of prepares a participant votes no on, default 0.05),
// --coordinator-kill-ms MIN,MAX (pause between coordinator kills, default
// 200,5000), --participant-kill-ms MIN,MAX (default 3000,10000),
// --restart-pause-ms MIN,MAX (default 50,1000), --settle-timeout-s N (default
// 120), --keep (keep the work directory; it is always kept after a
// violation).
//
// Minimums, for a run that must show something however slow the machine:
// --min-coordinator-kills N, --min-answers N (client answers naming a
// transaction), --min-each-outcome N (answers of each outcome, commit and
// abort). Load and faults go on past --seconds until every minimum is
// reached, for at most --max-seconds in all (default: --seconds).
//
// The seed fixes the fault schedule (every pause, which process, early kills
// during recovery), not the interleaving: that depends on the machine.
//
// The last line is the summary:
// chaos: seconds=… fault_seconds=… minimums=reached|missed transactions=… committed=… aborted=… coordinator_kills=… participant_kills=… violations=… seed=… …

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { int, num, on, parseFlags, range } from '../src/cli/args.js';
import { Rng } from '../test/support/rng.js';
import { MAIN, spawnService } from '../test/support/service.js';
import type { FileEntry, ParticipantState } from './durable-participant.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const PARTICIPANT = path.join(here, 'durable-participant.js');
const HOST = '127.0.0.1';

// Limits: every loop below is bounded by one of these, in count or in time.
const MAX_SECONDS = 24 * 3600;
const MAX_CLIENTS = 256;
const PARTICIPANT_COUNT = 3;
/** A logical transaction is retried (same idempotency key) for at most this long. */
const CLIENT_GIVE_UP_MS = 120_000;
const CLIENT_MAX_ATTEMPTS = 20_000;
const CLIENT_REQUEST_TIMEOUT_MS = 30_000;
/** After the faults stop, how long the client loops may take to get their last answers. */
const CLIENT_DRAIN_MS = CLIENT_GIVE_UP_MS + 30_000;
const START_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 5;
const STOP_TIMEOUT_MS = 20_000;
const CHECK_CONCURRENCY = 32;
const LIST_PAGE = 500;
const OUTPUT_TAIL_BYTES = 32 * 1024;
const VIOLATIONS_PRINTED = 100;
/** Finished transactions must stay readable for the whole run: the checker asks about every one. */
const RETENTION_MS = 7 * 24 * 3600 * 1000;

interface Options {
  seconds: number;
  maxSeconds: number;
  minCoordinatorKills: number;
  minAnswers: number;
  minEachOutcome: number;
  seed: number;
  clients: number;
  noFraction: number;
  coordinatorKillMs: [number, number];
  participantKillMs: [number, number];
  restartPauseMs: [number, number];
  settleTimeoutMs: number;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    seconds: int(1, MAX_SECONDS, 60),
    seed: int(0, 2 ** 31 - 1),
    clients: int(1, MAX_CLIENTS, 16),
    'no-fraction': num(0, 1, 0.05),
    'coordinator-kill-ms': range(3_600_000, [200, 5000]),
    'participant-kill-ms': range(3_600_000, [3000, 10_000]),
    'restart-pause-ms': range(3_600_000, [50, 1000]),
    'settle-timeout-s': int(1, 3600, 120),
    keep: on(),
    'max-seconds': int(1, MAX_SECONDS),
    'min-coordinator-kills': int(0, 10_000, 0),
    'min-answers': int(0, 10_000_000, 0),
    'min-each-outcome': int(0, 10_000_000, 0),
  });
  const maxSeconds = v['max-seconds'] ?? v.seconds;
  if (maxSeconds < v.seconds) throw new Error('--max-seconds must be at least --seconds');
  return {
    seconds: v.seconds,
    maxSeconds,
    minCoordinatorKills: v['min-coordinator-kills'],
    minAnswers: v['min-answers'],
    minEachOutcome: v['min-each-outcome'],
    seed: v.seed ?? Math.floor(Math.random() * 2 ** 31),
    clients: v.clients,
    noFraction: v['no-fraction'],
    coordinatorKillMs: v['coordinator-kill-ms'],
    participantKillMs: v['participant-kill-ms'],
    restartPauseMs: v['restart-pause-ms'],
    settleTimeoutMs: v['settle-timeout-s'] * 1000,
    keep: v.keep,
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

interface Violation {
  readonly kind: string;
  readonly tx: string | null;
  readonly detail: string;
}

/** What went wrong while the run was going on (unexpected exits, answers); the checker adds its own. */
const runtimeViolations: Violation[] = [];
/** Worth knowing, not a violation (a port taken by someone else, …). */
const notes: string[] = [];

// ---------------------------------------------------------------------------
// Processes

/** Every child ever started, so none outlives this process, whatever ends it. */
const children = new Set<ChildProcess>();

function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

class Tail {
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

interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once the process serves; rejects if it exits first or takes too long. */
  readonly ready: Promise<unknown>;
  /** We killed or stopped it: its exit is expected. */
  expected: boolean;
}

/** Starts one process of a kind; `ready` settles once it serves (or rejects if it exits first). */
type Launch = (onOutput: (chunk: string) => void) => {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<unknown>;
};

/** One service process, started again and again under the same name, port and files. */
class Supervised {
  private running: Running | null = null;
  readonly tail = new Tail();
  kills = 0;

  constructor(
    readonly label: string,
    private readonly launch: Launch,
  ) {}

  get alive(): boolean {
    return this.running !== null;
  }

  /** Starts the process without waiting for it to serve. */
  spawn(): Running {
    if (this.running) throw new Error(`${this.label} is already running`);
    const launched = this.launch((chunk) => this.tail.add(chunk));
    const child = launched.child;
    children.add(child);
    const exited = launched.exited.then((exit) => {
      children.delete(child);
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
}

const portsTaken = new Set<number>();

/** A free port below the ephemeral range, so no outgoing connection can take it while its owner restarts. */
async function stablePort(): Promise<number> {
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

/** The coordinator, always on the same port and data directory (test/support/service.ts starts it). */
function coordinatorLaunch(port: number, dataDir: string): Launch {
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
      },
      // If this process dies, even by SIGKILL, the coordinator stops too.
      stopWithParent: true,
      onOutput,
      readyTimeoutMs: START_TIMEOUT_MS,
    });
}

/** A durable participant (durable-participant.ts): ready once it says so. */
function participantLaunch(argv: readonly string[]): Launch {
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

// ---------------------------------------------------------------------------
// Faults

/** Load and faults run until `over`; when that is depends on what the run has reached (endFaults). */
interface Faults {
  over: boolean;
  readonly ended: Promise<void>;
}

async function sleepUntilOrEnd(ms: number, faults: Faults): Promise<boolean> {
  await Promise.race([sleep(ms), faults.ended]);
  return !faults.over;
}

/**
 * Ends load and faults after --seconds, or later, once the minimums are
 * reached, but never after --max-seconds: a slow machine runs longer instead
 * of showing less.
 */
async function endFaults(o: Options, faults: Faults, end: () => void, reached: () => string | null): Promise<void> {
  const startedAt = Date.now();
  await sleep(o.seconds * 1000);
  const lastEnd = startedAt + o.maxSeconds * 1000;
  const missing = reached();
  if (missing !== null && Date.now() < lastEnd) {
    console.error(`chaos: after ${o.seconds} s ${missing}: going on for up to ${o.maxSeconds} s in all`);
  }
  while (reached() !== null && Date.now() < lastEnd) await sleep(Math.min(250, lastEnd - Date.now()));
  faults.over = true;
  end();
}

async function coordinatorKiller(o: Options, coordinator: Supervised, faults: Faults): Promise<void> {
  const rng = Rng.stream(o.seed, 1);
  const maxKills = o.maxSeconds * 20;
  while (coordinator.kills < maxKills && (await sleepUntilOrEnd(rng.between(o.coordinatorKillMs), faults))) {
    await coordinator.kill('SIGKILL');
    await sleep(rng.between(o.restartPauseMs));
    // Now and then, kill it again while it is starting: in the middle of
    // opening the log or of recovery.
    if (rng.chance(0.15) && coordinator.kills < maxKills) {
      coordinator.spawn();
      await sleep(rng.between([0, 1000]));
      await coordinator.kill('SIGKILL');
      await sleep(rng.between(o.restartPauseMs));
    }
    await coordinator.start();
  }
}

async function participantKiller(o: Options, participants: Supervised[], faults: Faults): Promise<void> {
  const rng = Rng.stream(o.seed, 2);
  const maxKills = o.maxSeconds * 5;
  let kills = 0;
  while (kills < maxKills && (await sleepUntilOrEnd(rng.between(o.participantKillMs), faults))) {
    const first = rng.between([0, participants.length - 1]);
    const victims = [first];
    // Sometimes two at once.
    if (rng.chance(0.2)) victims.push((first + 1 + rng.between([0, participants.length - 2])) % participants.length);
    for (const i of victims) await participants[i]?.kill('SIGKILL');
    kills += victims.length;
    await sleep(rng.between(o.restartPauseMs));
    for (const i of victims) await participants[i]?.start();
  }
}

// ---------------------------------------------------------------------------
// Load

type Answer = 200 | 202 | 409 | 'gave-up';

interface ClientRecord {
  readonly key: string;
  readonly answer: Answer;
  readonly txId: string | null;
  readonly attempts: number;
}

interface LoadStats {
  networkErrors: number;
  unavailable: number;
  unexpected: number;
}

async function clientLoop(
  loop: number,
  o: Options,
  pool: Pool,
  participantUrls: string[],
  faults: Faults,
  records: ClientRecord[],
  stats: LoadStats,
): Promise<void> {
  const rng = Rng.stream(o.seed, 100 + loop);
  const maxLogical = o.maxSeconds * 10_000;
  for (let n = 0; n < maxLogical && !faults.over; n++) {
    const key = `chaos-${o.seed}-${loop}-${n}`;
    const body = JSON.stringify({
      participants: participantUrls.map((url, i) => ({ name: `p${i}`, url, payload: { key } })),
      commit: true,
      idempotencyKey: key,
    });
    records.push(await oneLogical(key, body, pool, rng, stats));
  }
}

/** One logical transaction: the same request, same key, until a definite answer. */
async function oneLogical(key: string, body: string, pool: Pool, rng: Rng, stats: LoadStats): Promise<ClientRecord> {
  const started = Date.now();
  let attempts = 0;
  while (attempts < CLIENT_MAX_ATTEMPTS && Date.now() - started < CLIENT_GIVE_UP_MS) {
    attempts++;
    let status: number;
    let text: string;
    try {
      const res = await pool.request({
        path: '/v1/transactions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        headersTimeout: CLIENT_REQUEST_TIMEOUT_MS,
        bodyTimeout: CLIENT_REQUEST_TIMEOUT_MS,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch {
      // Refused while the coordinator is down, reset when it was killed mid-request.
      stats.networkErrors++;
      await sleep(rng.between([20, 100]));
      continue;
    }
    if (status === 503) {
      stats.unavailable++;
      await sleep(rng.between([20, 100]));
      continue;
    }
    let answer: any = null;
    try {
      answer = JSON.parse(text);
    } catch {
      // judged below
    }
    const tx = status === 409 ? answer?.transaction : answer;
    const id: string | null = typeof tx?.id === 'string' ? tx.id : null;
    const valid =
      id !== null &&
      ((status === 200 && tx.state === 'committed' && tx.outcome === 'commit') ||
        (status === 202 && tx.state === 'committing' && tx.outcome === 'commit') ||
        (status === 409 && tx.state === 'aborted' && tx.outcome === 'abort') ||
        (status === 409 && tx.state === 'aborting' && tx.outcome === 'abort'));
    if (valid && (status === 200 || status === 202 || status === 409)) {
      return { key, answer: status as Answer, txId: id, attempts };
    }
    stats.unexpected++;
    runtimeViolations.push({
      kind: 'unexpected-answer',
      tx: id,
      detail: `key ${key}: HTTP ${status} ${text.slice(0, 500)}`,
    });
    await sleep(rng.between([20, 100]));
  }
  return { key, answer: 'gave-up', txId: null, attempts };
}

// ---------------------------------------------------------------------------
// Settling and asking the coordinator

/** What the checker needs of the coordinator's view of a transaction. */
interface View {
  readonly state: string;
  readonly outcome: string | null;
  readonly heuristics: string | null;
}

function toView(tx: any): View {
  const heuristics = (tx.participants ?? [])
    .filter((p: any) => p.heuristic)
    .map((p: any) => `${p.name}:${p.heuristic}`)
    .join(',');
  return { state: String(tx.state), outcome: tx.outcome ?? null, heuristics: heuristics || null };
}

const FINAL = new Set(['committed', 'aborted']);

async function getJson(pool: Pool, pathname: string): Promise<{ status: number; body: any }> {
  const res = await pool.request({ path: pathname, method: 'GET', headersTimeout: 30_000, bodyTimeout: 30_000 });
  const text = await res.body.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.statusCode, body };
}

/** Runs `fn` over `items` with at most `CHECK_CONCURRENCY` at a time. */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CHECK_CONCURRENCY, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** Every transaction the coordinator lists, page by page. */
async function listAll(pool: Pool, maxPages: number): Promise<Map<string, View>> {
  const views = new Map<string, View>();
  let after: string | null = null;
  for (let page = 0; page < maxPages; page++) {
    const q = `/v1/transactions?limit=${LIST_PAGE}${after ? `&after=${after}` : ''}`;
    const { status, body } = await getJson(pool, q);
    if (status !== 200) throw new Error(`GET ${q} answered ${status}: ${JSON.stringify(body).slice(0, 300)}`);
    for (const tx of body.transactions) views.set(tx.id, toView(tx));
    after = body.next;
    if (after === null) return views;
  }
  throw new Error(`the coordinator's list is longer than ${maxPages} pages`);
}

interface Settled {
  readonly views: Map<string, View>;
  /** Ids the coordinator answers 404 for. */
  readonly missing: Set<string>;
  /** Ids still not committed or aborted when the time ran out. */
  readonly unsettled: Set<string>;
}

/**
 * Waits until every id is committed or aborted at the coordinator (or the
 * time is up). `ensureUp` restarts whatever died meanwhile: an exit now is a
 * violation already recorded, and the rest must still be checked.
 */
async function settle(
  pool: Pool,
  ids: Set<string>,
  skip: Set<string>,
  timeoutMs: number,
  ensureUp: () => Promise<void>,
): Promise<Settled> {
  const deadline = Date.now() + timeoutMs;
  const views = await listAll(pool, Math.ceil((ids.size * 2) / LIST_PAGE) + 100);
  const missing = new Set<string>();
  const unsettled = new Set<string>();
  for (const id of new Set([...ids, ...views.keys()])) {
    if (!FINAL.has(views.get(id)?.state ?? '') && !skip.has(id)) unsettled.add(id);
  }
  for (let round = 0; unsettled.size > 0 && Date.now() < deadline && round < 100_000; round++) {
    await ensureUp();
    await eachLimited([...unsettled], async (id) => {
      const { status, body } = await getJson(pool, `/v1/transactions/${id}`).catch(() => ({ status: 0, body: null }));
      if (status === 404) {
        missing.add(id);
        unsettled.delete(id);
      } else if (status === 200) {
        views.set(id, toView(body));
        if (FINAL.has(body.state)) unsettled.delete(id);
      }
    });
    if (unsettled.size > 0) await sleep(250);
  }
  return { views, missing, unsettled };
}

async function fetchOutcomes(pool: Pool, ids: Iterable<string>): Promise<Map<string, string>> {
  const outcomes = new Map<string, string>();
  await eachLimited([...ids], async (id) => {
    try {
      const { status, body } = await getJson(pool, `/v1/transactions/${id}/outcome`);
      outcomes.set(id, status === 200 ? String(body.outcome) : `HTTP ${status}`);
    } catch (error) {
      outcomes.set(id, `no answer: ${(error as Error).message}`);
    }
  });
  return outcomes;
}

// ---------------------------------------------------------------------------
// The checker

interface TxAtParticipant {
  state: ParticipantState;
  key: string | null;
  /** What happened, in order, for the violation report: `prepare>prepared commit>committed`. */
  history: string;
}

interface Replay {
  readonly name: string;
  readonly txs: Map<string, TxAtParticipant>;
  readonly anomalies: Violation[];
  /** Aborts of ids it had never heard of (answered 404, remembered). */
  readonly unknownAborts: number;
}

/** Rebuilds a participant's per-transaction state from its file, checking every step is one it may take. */
function replay(name: string, file: string): Replay {
  const txs = new Map<string, TxAtParticipant>();
  const anomalies: Violation[] = [];
  const refusals = new Map<string, number>();
  let unknownAborts = 0;
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const lines = text.split('\n');
  // The last element is what follows the last newline: empty, or a torn write never answered for.
  lines.pop();
  for (const line of lines) {
    if (line === '') continue;
    let e: FileEntry;
    try {
      e = JSON.parse(line) as FileEntry;
    } catch {
      anomalies.push({ kind: 'participant-file-corrupt', tx: null, detail: `${name}: unreadable line ${line}` });
      continue;
    }
    const known = txs.get(e.tx);
    if (e.anomaly !== undefined) {
      // The coordinator retries a refused message without end: one violation per kind of request.
      const id = `${e.tx} ${e.op} ${e.anomaly}`;
      refusals.set(id, (refusals.get(id) ?? 0) + 1);
      if (refusals.get(id) === 1) {
        anomalies.push({ kind: 'participant-refused-request', tx: e.tx, detail: `${name}: ${e.anomaly}` });
      }
      if (known && !known.history.endsWith(` ${e.op}!`)) known.history += ` ${e.op}!`;
      continue;
    }
    const from = known?.state;
    const to = e.to;
    const allowed =
      (from === undefined && e.op === 'prepare' && (to === 'prepared' || to === 'refused')) ||
      (from === undefined && e.op === 'abort' && to === 'aborted') ||
      (from === 'prepared' && e.op === 'commit' && to === 'committed') ||
      (from === 'prepared' && e.op === 'abort' && to === 'aborted');
    if (!allowed || to === undefined) {
      anomalies.push({
        kind: 'participant-bad-transition',
        tx: e.tx,
        detail: `${name}: ${e.op} took ${from ?? 'unknown'} to ${to}`,
      });
      continue;
    }
    if (e.unknown) unknownAborts++;
    const step = `${e.op}>${to}${e.unknown ? '(unknown id)' : ''}`;
    if (known) {
      known.state = to;
      known.history += ` ${step}`;
    } else {
      txs.set(e.tx, { state: to, key: e.key ?? null, history: step });
    }
  }
  return { name, txs, anomalies, unknownAborts };
}

interface CheckInput {
  readonly participants: readonly Replay[];
  readonly records: readonly ClientRecord[];
  readonly settled: Settled;
  readonly outcomes: ReadonlyMap<string, string>;
}

interface CheckResult {
  readonly violations: Violation[];
  readonly transactions: number;
  readonly committed: number;
  readonly aborted: number;
}

function check(input: CheckInput): CheckResult {
  const { participants, records, settled, outcomes } = input;
  const violations: Violation[] = participants.flatMap((p) => p.anomalies);
  const ids = new Set<string>();
  for (const p of participants) for (const id of p.txs.keys()) ids.add(id);
  for (const id of settled.views.keys()) ids.add(id);
  for (const id of settled.missing) ids.add(id);
  for (const r of records) if (r.txId !== null) ids.add(r.txId);

  const describe = (id: string): string => {
    const at = participants.map((p) => `${p.name}: ${p.txs.get(id)?.history ?? 'never heard of it'}`).join('; ');
    const v = settled.views.get(id);
    const coordinator = settled.missing.has(id) ? '404' : v ? `${v.state}/${v.outcome}` : 'not asked';
    return `${at}; coordinator: ${coordinator}, outcome inquiry: ${outcomes.get(id) ?? 'not asked'}`;
  };
  const add = (kind: string, id: string, what: string) =>
    violations.push({ kind, tx: id, detail: `${what} (${describe(id)})` });

  let committed = 0;
  let aborted = 0;
  const everywhere = (id: string) => participants.every((p) => p.txs.get(id)?.state === 'committed');
  const anywhere = (id: string) => participants.some((p) => p.txs.get(id)?.state === 'committed');
  for (const id of ids) {
    const states = participants.map((p) => p.txs.get(id)?.state);
    const all = everywhere(id);
    const some = anywhere(id);
    if (some && !all) {
      const rolledBack = states.some((s) => s === 'aborted' || s === 'refused');
      add(rolledBack ? 'split-outcome' : 'partial-commit', id, 'committed at some participants, not at all');
    }
    if (states.includes('prepared')) add('left-prepared', id, 'a participant is still prepared');
    const outcome = outcomes.get(id);
    if (outcome === 'commit') {
      committed++;
      if (!all) add('outcome-disagrees', id, 'the coordinator reports commit, not every participant committed');
    } else if (outcome === 'abort') {
      aborted++;
      if (some) add('outcome-disagrees', id, 'the coordinator reports abort, a participant committed');
    } else {
      add('outcome-undecided', id, `the outcome inquiry answers ${outcome ?? 'nothing'} after settling`);
    }
    const view = settled.views.get(id);
    if (settled.missing.has(id)) add('record-lost', id, 'the coordinator has no record of a transaction it ran');
    else if (settled.unsettled.has(id)) add('unsettled', id, 'not committed or aborted when the settle time ran out');
    else if (view && outcome !== undefined && view.outcome !== outcome) {
      add('outcome-disagrees', id, `GET says outcome ${view.outcome}, the outcome inquiry ${outcome}`);
    }
    if (view?.heuristics) add('heuristic', id, `heuristic outcomes reported: ${view.heuristics}`);
  }

  const idsOfKey = new Map<string, Set<string>>();
  for (const p of participants) {
    for (const [id, t] of p.txs) {
      if (t.key === null) continue;
      const set = idsOfKey.get(t.key) ?? new Set<string>();
      set.add(id);
      idsOfKey.set(t.key, set);
    }
  }
  for (const [key, set] of idsOfKey) {
    if (set.size > 1) {
      for (const id of set) add('key-reused', id, `idempotency key ${key} ran as ${set.size} transactions`);
    }
  }
  const keyOfId = new Map<string, string>();
  for (const r of records) {
    if (r.answer === 'gave-up') {
      violations.push({
        kind: 'client-gave-up',
        tx: null,
        detail: `key ${r.key}: no answer in ${r.attempts} attempts`,
      });
      continue;
    }
    const id = r.txId as string;
    const other = keyOfId.get(id);
    if (other !== undefined) add('id-shared', id, `keys ${other} and ${r.key} were answered with the same transaction`);
    keyOfId.set(id, r.key);
    const seen = idsOfKey.get(r.key);
    if (seen && !seen.has(id))
      add('key-id-mismatch', id, `key ${r.key} answered with ${id}, participants ran ${[...seen]}`);
    if ((r.answer === 200 || r.answer === 202) && !everywhere(id)) {
      add('acknowledged-commit-lost', id, `client was told ${r.answer} (commit), not committed at every participant`);
    }
    if ((r.answer === 200 || r.answer === 202) && outcomes.get(id) !== 'commit') {
      add('acknowledged-commit-lost', id, `client was told ${r.answer} (commit), the coordinator's outcome disagrees`);
    }
    if (r.answer === 409 && anywhere(id)) add('reported-abort-committed', id, 'client was told 409 (aborted)');
  }
  return { violations, transactions: ids.size, committed, aborted };
}

// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  for (const f of [MAIN, PARTICIPANT]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  }
  // A hard bound on the whole run, whatever hangs: the load, draining the
  // clients, settling, a list of outcomes to ask at most one request per
  // transaction (generously timed), stopping.
  const budgetMs = o.maxSeconds * 1000 + CLIENT_DRAIN_MS + o.settleTimeoutMs + o.maxSeconds * 1000 + 5 * 60_000;
  setTimeout(() => {
    console.error(`chaos: the run took longer than ${budgetMs} ms; stopping every process started`);
    killAllChildren();
    process.exit(2);
  }, budgetMs).unref();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-chaos-'));
  const startedAt = Date.now();
  const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(0)}s`;
  console.error(`chaos: work directory ${work}, seed ${o.seed}, ${o.seconds} s of load and faults`);

  const coordinatorPort = await stablePort();
  const coordinatorUrl = `http://${HOST}:${coordinatorPort}`;
  const coordinator = new Supervised('coordinator', coordinatorLaunch(coordinatorPort, path.join(work, 'data')));
  const participants: Supervised[] = [];
  const participantUrls: string[] = [];
  const files: string[] = [];
  for (let i = 0; i < PARTICIPANT_COUNT; i++) {
    const port = await stablePort();
    const file = path.join(work, `p${i}.log`);
    const argv = ['--port', String(port), '--name', `p${i}`, '--file', file, '--no-fraction', String(o.noFraction)];
    participants.push(new Supervised(`participant p${i}`, participantLaunch(argv)));
    participantUrls.push(`http://${HOST}:${port}/tx`);
    files.push(file);
  }
  await Promise.all([coordinator.start(), ...participants.map((p) => p.start())]);

  const clientPool = new Pool(coordinatorUrl, { connections: o.clients, pipelining: 1 });
  const checkPool = new Pool(coordinatorUrl, { connections: CHECK_CONCURRENCY, pipelining: 1 });
  try {
    // Load and faults.
    let ended = () => {};
    const faults: Faults = { over: false, ended: new Promise<void>((resolve) => (ended = resolve)) };
    const faultsStartedAt = Date.now();
    const records: ClientRecord[] = [];
    const stats: LoadStats = { networkErrors: 0, unavailable: 0, unexpected: 0 };
    const progress = setInterval(() => {
      const count = (a: Answer) => records.filter((r) => r.answer === a).length;
      console.error(
        `chaos progress: t=${elapsed()} answers=${records.length} (200 ${count(200)}, 202 ${count(202)}, 409 ${count(409)}) ` +
          `coordinator_kills=${coordinator.kills} participant_kills=${participants.reduce((n, p) => n + p.kills, 0)} ` +
          `refused_or_reset=${stats.networkErrors} unavailable=${stats.unavailable}`,
      );
    }, 10_000);
    const answered = (...answers: Answer[]) => records.filter((r) => answers.includes(r.answer)).length;
    const missing = (): string | null => {
      const short: string[] = [];
      if (coordinator.kills < o.minCoordinatorKills)
        short.push(`coordinator_kills ${coordinator.kills} < ${o.minCoordinatorKills}`);
      if (answered(200, 202, 409) < o.minAnswers) short.push(`answers ${answered(200, 202, 409)} < ${o.minAnswers}`);
      if (answered(200, 202) < o.minEachOutcome)
        short.push(`commit answers ${answered(200, 202)} < ${o.minEachOutcome}`);
      if (answered(409) < o.minEachOutcome) short.push(`abort answers ${answered(409)} < ${o.minEachOutcome}`);
      return short.length === 0 ? null : short.join(', ');
    };
    const faultsEnd = endFaults(o, faults, ended, missing);
    const killers = [coordinatorKiller(o, coordinator, faults), participantKiller(o, participants, faults)];
    const loops = Array.from({ length: o.clients }, (_, i) =>
      clientLoop(i, o, clientPool, participantUrls, faults, records, stats),
    );
    await faultsEnd;
    const faultSeconds = (Date.now() - faultsStartedAt) / 1000;
    const unreached = missing();
    if (unreached !== null) console.error(`chaos: minimums not reached within ${o.maxSeconds} s: ${unreached}`);
    await Promise.all(killers);
    clearInterval(progress);

    // Faults are over: everything runs again (a start a killer left undone included).
    const ensureUp = async () => {
      if (!coordinator.alive) await coordinator.start();
      for (const p of participants) if (!p.alive) await p.start();
    };
    await ensureUp();
    console.error(`chaos: t=${elapsed()} faults stopped, waiting for the clients' last answers`);
    const drained = await Promise.race([Promise.all(loops).then(() => true), sleep(CLIENT_DRAIN_MS).then(() => false)]);
    if (!drained) throw new Error(`client loops did not finish within ${CLIENT_DRAIN_MS} ms of the faults stopping`);

    // Settle: every transaction anyone saw reaches committed or aborted.
    const seen = new Set<string>();
    const refusedIds = new Set<string>();
    for (const [i, f] of files.entries()) {
      const r = replay(`p${i}`, f);
      for (const id of r.txs.keys()) seen.add(id);
      for (const a of r.anomalies) if (a.tx) refusedIds.add(a.tx);
    }
    for (const r of records) if (r.txId) seen.add(r.txId);
    console.error(`chaos: t=${elapsed()} settling ${seen.size} transactions`);
    const settled = await settle(checkPool, seen, refusedIds, o.settleTimeoutMs, ensureUp);
    const allIds = new Set([...seen, ...settled.views.keys(), ...settled.missing]);
    console.error(`chaos: t=${elapsed()} asking the outcome of ${allIds.size} transactions`);
    const outcomes = await fetchOutcomes(checkPool, allIds);

    // Stop cleanly; the files are complete once the participants are gone.
    await clientPool.close();
    await checkPool.close();
    const code = await coordinator.kill('SIGTERM');
    if (code !== 0) {
      runtimeViolations.push({
        kind: 'unclean-stop',
        tx: null,
        detail: `the coordinator exited ${code} on SIGTERM; last output:\n${coordinator.tail.lines(30)}`,
      });
    }
    for (const p of participants) await p.kill('SIGTERM');

    const replays = files.map((f, i) => replay(`p${i}`, f));
    const late = replays.flatMap((r) => [...r.txs.keys()]).filter((id) => !outcomes.has(id));
    const result = check({ participants: replays, records, settled, outcomes });
    const violations = [...runtimeViolations, ...result.violations];
    for (const id of new Set(late)) {
      violations.push({ kind: 'seen-late', tx: id, detail: 'a participant heard of it after everything settled' });
    }

    const byKind = new Map<string, number>();
    for (const v of violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1);
    for (const v of violations.slice(0, VIOLATIONS_PRINTED)) {
      console.log(`violation ${v.kind}${v.tx ? ` ${v.tx}` : ''}: ${v.detail}`);
    }
    if (violations.length > VIOLATIONS_PRINTED) {
      console.log(`… and ${violations.length - VIOLATIONS_PRINTED} more`);
    }
    if (byKind.size > 0) console.log(`violations by kind: ${[...byKind].map(([k, n]) => `${k}=${n}`).join(' ')}`);
    for (const note of new Set(notes)) console.error(`note: ${note}`);

    const count = (a: Answer) => records.filter((r) => r.answer === a).length;
    const participantKills = participants.reduce((n, p) => n + p.kills, 0);
    console.log(
      `chaos: seconds=${o.seconds} fault_seconds=${faultSeconds.toFixed(0)} minimums=${unreached === null ? 'reached' : 'missed'} transactions=${result.transactions} committed=${result.committed} ` +
        `aborted=${result.aborted} coordinator_kills=${coordinator.kills} participant_kills=${participantKills} ` +
        `violations=${violations.length} seed=${o.seed} clients=${o.clients} logical=${records.length} ` +
        `answered_200=${count(200)} answered_202=${count(202)} answered_409=${count(409)} gave_up=${count('gave-up')} ` +
        `refused_or_reset=${stats.networkErrors} unavailable=${stats.unavailable} ` +
        `unknown_id_aborts=${replays.reduce((n, r) => n + r.unknownAborts, 0)} wall=${elapsed()}`,
    );
    if (violations.length > 0 || o.keep) console.error(`chaos: work directory kept: ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
    return violations.length > 0 ? 1 : 0;
  } catch (error) {
    console.error(`chaos: work directory kept: ${work}`);
    console.error(`chaos: coordinator output (last lines):\n${coordinator.tail.lines(30)}`);
    throw error;
  } finally {
    killAllChildren();
    await clientPool.destroy().catch(() => {});
    await checkPool.destroy().catch(() => {});
  }
}

process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    console.error(`chaos: ${signal}: stopping every process started`);
    killAllChildren();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error('chaos: the run failed:', error);
    killAllChildren();
    process.exit(2);
  },
);
