// The deterministic simulator: the real protocol/ and coordinator/ code,
// driven by one seed, against simulated time, log, network and participants.
// A run has a fault phase (message loss, duplication, reordering, partitions,
// participant and coordinator crashes, clients doing everything the API
// allows) and then a healing phase in which every transaction must finish.
// Invariants are checked at every step where the thing they guard happens
// (see checks.ts for the list and where each is checked).

import { Coordinator } from '../../src/coordinator/coordinator.js';
import { Metrics } from '../../src/metrics.js';
import { CallLimiter } from '../../src/participants/call-limiter.js';
import { answerWaitMsMax, commitAnswer, prepareAnswer } from '../../src/protocol/answers.js';
import { step as realStep } from '../../src/protocol/transitions.js';
import type { Outcome, Transaction } from '../../src/protocol/types.js';
import type { TimerHandle, Timers } from '../../src/timers.js';
import { Checks, type Violation } from './checks.js';
import { SimLog, type SimLogBugs } from './sim-log.js';
import { type Faults, type Incarnation, SimClient, SimNetwork, SimParticipant } from './sim-participants.js';
import { Rng, World } from './world.js';

export interface SimOptions {
  readonly seed: number;
  /** Planted bugs, to show the checks catch them. */
  readonly logBugs?: SimLogBugs;
  readonly protocolStep?: typeof realStep;
  /** Planted bugs outside the protocol: how answers are read, how call time is counted. */
  readonly runtimeBugs?: RuntimeBugs;
  /** Simulated milliseconds of faults before healing. */
  readonly faultMs?: number;
  /** Bound on simulated steps for the whole run (liveness is judged within it). */
  readonly maxSteps?: number;
  /** Prints a line per transaction at the end (the CLI's --seed replay). */
  readonly trace?: (line: string) => void;
}

export interface RuntimeBugs {
  /** A call that waited past its bound with nothing decided is answered as if the commit were decided (the old 202). */
  readonly undecidedAnsweredAccepted?: boolean;
  /** A participant call's time limit counts from when it got a call slot, not from when it was asked for. */
  readonly callTimeFromWire?: boolean;
}

export interface SimResult {
  readonly seed: number;
  readonly violations: Violation[];
  readonly steps: number;
  readonly simulatedMs: number;
  readonly transactions: number;
  readonly committed: number;
  readonly aborted: number;
  readonly coordinatorCrashes: number;
}

const PARTICIPANTS = ['alpha', 'bravo', 'charlie'];
const CALL_TIMEOUT_MS = 200;
/** The largest step of the coordinator's wall clock, either way: longer than most deadlines. */
const CLOCK_STEP_MS_MAX = 3000;
/** How far behind the wall clock may be when the coordinator restarts: longer than any deadline here. */
const BOOT_CLOCK_LAG_MS_MAX = 10_000;
const HEAL_LIMIT_MS = 120_000;

export async function simulate(options: SimOptions): Promise<SimResult> {
  const rng = new Rng(options.seed);
  const world = new World(rng);
  const checks = new Checks(() => ({ atMs: world.now - START_MS, step: world.steps }));
  const faultMs = options.faultMs ?? rng.int(1000, 4000);
  const maxSteps = options.maxSteps ?? 400_000;
  const faults: Faults = {
    enabled: true,
    lossRate: rng.pick([0, 0, 0.01, 0.05, 0.15]),
    duplicateRate: rng.pick([0, 0.05, 0.2]),
    longDelayRate: rng.pick([0, 0.05, 0.2]),
    crashAfterActingRate: rng.pick([0, 0.01, 0.05]),
  };
  const heuristics = rng.chance(0.1);
  const log = new SimLog(world, checks, rng.int(0, 5), options.logBugs);
  // A slow disk in some runs: now and then a flush takes seconds, longer than
  // a caller may wait for its answer.
  const slowFlushRate = rng.pick([0, 0, 0.01, 0.05]);
  log.slowFlushMs = () => (faults.enabled && rng.chance(slowFlushRate) ? rng.int(500, 2500) : 0);
  // Crashes right after a message leaves, inside the window where what led
  // to it may not be written yet (a lazy record waits for its flush): most
  // often after an abort, the message the protocol may send before its
  // decision is on disk.
  const crashAfterSendRate = rng.pick([0, 0.05, 0.25, 0.5]);
  const network = new SimNetwork(world, faults);
  const participants = new Map<string, SimParticipant>();
  for (const name of PARTICIPANTS) {
    const profile = {
      noRate: rng.pick([0, 0, 0.02, 0.2]),
      readOnlyRate: rng.pick([0, 0.1]),
      heuristicRate: heuristics ? 0.2 : 0,
    };
    participants.set(name, new SimParticipant(name, world, checks, faults, profile, () => [...participants.values()]));
  }
  const sleep = (ms: number) => new Promise<void>((resolve) => world.at(ms, resolve));

  // --- the coordinator process, which crashes and restarts ---------------
  let incarnation: Incarnation = { alive: false };
  let coordinator: Coordinator | null = null;
  let crashes = 0;
  const metrics = new Metrics({ processMetrics: false });
  // The wall clock the coordinator reads: simulated time plus an offset that
  // steps back and forward while it runs and across its restarts (a clock set
  // by an operator, or by NTP after a boot). Its timers run on simulated
  // time, which never steps, as real timers do.
  let clockOffsetMs = 0;
  const stepClock = () => {
    // NTP keeps a running clock within bounds of true time.
    const stepped = clockOffsetMs + rng.int(-CLOCK_STEP_MS_MAX, CLOCK_STEP_MS_MAX);
    clockOffsetMs = Math.max(-BOOT_CLOCK_LAG_MS_MAX, Math.min(BOOT_CLOCK_LAG_MS_MAX, stepped));
  };
  // Few call slots in some runs, so calls wait in the queue behind slow ones.
  const callSlots = rng.pick([1, 2, 4, 64]);
  const start = () => {
    // One coordinator process at a time, as the log's lock guarantees.
    if (incarnation.alive) return;
    const inc: Incarnation = { alive: true };
    const timers: Timers = {
      now: () => world.now + clockOffsetMs,
      monotonicMs: () => world.now,
      after: (ms, fn) => {
        const handle = { cancelled: false };
        world.at(ms, () => {
          if (inc.alive && !handle.cancelled) fn();
        });
        return handle as TimerHandle;
      },
      cancel: (handle) => {
        (handle as { cancelled: boolean }).cancelled = true;
      },
    };
    const client = new SimClient(
      world,
      network,
      participants,
      inc,
      log,
      checks,
      CALL_TIMEOUT_MS,
      new CallLimiter(callSlots, timers),
      options.runtimeBugs?.callTimeFromWire,
    );
    client.onSent = (action) => {
      if (faults.enabled && rng.chance(action === 'abort' ? crashAfterSendRate : crashAfterSendRate / 10)) crash();
    };
    const c = new Coordinator({
      log,
      participants: client,
      metrics,
      timers,
      random: () => rng.next(),
      entropy: (n) => rng.bytes(n),
      onInvariantViolation: (e) => checks.fail('the coordinator asserts its own invariants', e.message),
      protocolStep: options.protocolStep ?? realStep,
      defaultTimeoutMs: 2000,
      maxInFlight: 10_000,
      maxParticipants: 8,
      retryDelayMsMin: 5,
      retryDelayMsMax: 200,
      stuckAfterAttempts: 10,
      answerWaitMsMax: answerWaitMsMax(CALL_TIMEOUT_MS, CALL_TIMEOUT_MS),
      sweepIntervalMs: 50,
      retentionMs: 500,
      idempotencyKeyRetentionMs: 5000,
      compactionBatch: 100,
      // Small budgets, so recovered transactions wait their turn and meet
      // clients, deadlines and inquiries before their recovery step. From the
      // seed, not the rng: every seed's other choices stay as they were.
      recoveryCallsMax: 1 + (options.seed % 4),
    });
    c.recover();
    incarnation = inc;
    coordinator = c;
  };
  const crash = () => {
    if (!incarnation.alive) return;
    incarnation.alive = false;
    coordinator = null;
    log.crash();
    crashes++;
    // A restart is where a stepped clock does harm: what the last run
    // decided by the clock, the next one judges by another. Most often it is
    // behind (set at boot, before NTP corrects it).
    if (faults.enabled) clockOffsetMs = rng.chance(0.7) ? -rng.int(0, BOOT_CLOCK_LAG_MS_MAX) : 0;
    world.at(rng.int(1, 300), start);
  };
  log.crashAfterFlush = () => {
    if (!faults.enabled || !rng.chance(0.02)) return false;
    crash();
    return true;
  };
  start();

  // Prepared participants ask the running coordinator, over the network.
  for (const p of participants.values()) {
    p.inquire = (txId, answer) => {
      network.request(
        p,
        () => {
          const c = coordinator;
          if (!c) return;
          const outcome = c.outcome(txId);
          network.reply(p, () => answer(outcome));
        },
        () => {},
      );
    };
  }

  // --- faults --------------------------------------------------------------
  const coordinatorCrashes = rng.int(0, 4);
  for (let i = 0; i < coordinatorCrashes; i++) world.at(rng.int(0, faultMs), crash);
  for (let i = rng.int(0, 2); i > 0; i--) world.at(rng.int(0, faultMs), stepClock);
  for (const p of participants.values()) {
    for (let i = rng.int(0, 2); i > 0; i--) world.at(rng.int(0, faultMs), () => p.crashFor(rng.int(50, 800)));
    for (let i = rng.int(0, 2); i > 0; i--) {
      world.at(rng.int(0, faultMs), () => {
        p.partitioned = true;
        world.at(rng.int(50, 1000), () => {
          p.partitioned = false;
        });
      });
    }
  }

  // --- clients ---------------------------------------------------------------
  const begun = new Set<string>();
  const told = new Map<string, Outcome>();
  const tell = (tx: Transaction | undefined, outcome: Outcome | null) => {
    if (!tx || outcome === null) return;
    const before = told.get(tx.id);
    if (before && before !== outcome) {
      checks.fail('an outcome, once decided, never changes', `${tx.id}: a client was told ${before}, then ${outcome}`);
    }
    told.set(tx.id, outcome);
  };
  /** One call to whichever coordinator runs now; a crash mid-call is a timeout, retried a few times. */
  const attempt = async <T>(call: (c: Coordinator) => Promise<T>): Promise<T | null> => {
    for (let i = 0; i < 4; i++) {
      const c = coordinator;
      if (c) {
        const result = await Promise.race([call(c).catch(() => null), sleep(3000).then(() => null)]);
        if (result !== null) return result;
      }
      await sleep(rng.int(50, 400));
    }
    return null;
  };
  const pickParticipants = () =>
    PARTICIPANTS.filter(() => rng.chance(0.6)).map((name) => ({
      name,
      url: (participants.get(name) as SimParticipant).url,
      payloadJson: null,
    }));
  // Clients read answers as the API maps them to status codes: 200 and 202
  // say commit, 409 says abort, a pending 503 says nothing.
  const readCommitAnswer = (a: { tx: Transaction; refusal: unknown } | null) => {
    if (!a) return;
    let answer = commitAnswer(a.tx, a.refusal !== null);
    if (answer === 'undecided' && options.runtimeBugs?.undecidedAnsweredAccepted) answer = 'commit-decided';
    if (answer === 'aborted') tell(a.tx, 'abort');
    if (answer === 'committed' || answer === 'commit-decided') tell(a.tx, 'commit');
  };
  const clientCount = rng.int(4, 14);
  let keys = 0;
  for (let i = 0; i < clientCount; i++) {
    world.at(rng.int(0, faultMs), () => {
      const oneShot = rng.chance(0.5);
      const key = rng.chance(0.5) ? `key-${keys++}` : null;
      const request = {
        participants: pickParticipants(),
        timeoutMs: rng.int(300, 3000),
        idempotencyKey: key,
        idempotencyScope: '',
        requestHash: key,
        metadataJson: null,
        commit: oneShot,
      };
      void (async () => {
        const begin = await attempt((c) => c.begin(request));
        if (!begin) return;
        begun.add(begin.tx.id);
        const id = begin.tx.id;
        if (oneShot) {
          readCommitAnswer(begin);
          if (rng.chance(0.3)) readCommitAnswer(await attempt((c) => c.commit(id)));
          return;
        }
        if (rng.chance(0.3)) {
          const extra = PARTICIPANTS.filter((n) => !request.participants.some((p) => p.name === n));
          if (extra.length > 0) {
            const name = rng.pick(extra);
            await attempt((c) =>
              c.enlist(id, { name, url: (participants.get(name) as SimParticipant).url, payloadJson: null }),
            );
          }
        }
        await sleep(rng.int(0, 500));
        if (rng.chance(0.5)) {
          const prepared = await attempt((c) => c.prepare(id));
          if (prepared && prepareAnswer(prepared.tx, prepared.refusal !== null) === 'aborted')
            tell(prepared.tx, 'abort');
          // Sometimes the client comes back only after the deadline.
          await sleep(rng.chance(0.5) ? rng.int(0, 3000) : rng.int(0, 500));
        }
        const abort = rng.chance(0.25);
        for (let n = rng.chance(0.3) ? 2 : 1; n > 0; n--) {
          if (abort) {
            const a = await attempt((c) => c.abort(id));
            if (a && !a.refusal) tell(a.tx, 'abort');
            if (a?.refusal) tell(a.tx, 'commit');
          } else {
            readCommitAnswer(await attempt((c) => c.commit(id)));
          }
        }
      })();
    });
  }

  // --- run: faults, then healing ------------------------------------------
  const faultEnd = world.now + faultMs;
  while (world.now < faultEnd && world.steps < maxSteps && (await world.step())) {}
  faults.enabled = false;
  for (const p of participants.values()) {
    p.partitioned = false;
  }
  if (!incarnation.alive) start();
  const healDeadline = world.now + HEAL_LIMIT_MS;
  const prepared = () => [...participants.values()].some((p) => [...p.states.values()].includes('prepared'));
  while (world.steps < maxSteps && world.now < healDeadline) {
    if (world.steps % 50 === 0 && coordinator && (coordinator as Coordinator).inFlight === 0 && !prepared()) break;
    if (!(await world.step())) break;
  }

  // --- final checks ---------------------------------------------------------
  for (const p of participants.values()) {
    for (const [txId, state] of p.states) {
      if (state === 'prepared') {
        checks.fail(
          'liveness: when faults stop, every transaction finishes and no participant stays prepared',
          `${txId}: ${p.name} still prepared`,
        );
      }
    }
  }
  const c = coordinator as Coordinator | null;
  if (c && c.inFlight > 0) {
    checks.fail(
      'liveness: when faults stop, every transaction finishes and no participant stays prepared',
      `${c.inFlight} transactions unfinished after ${world.now - faultEnd} ms of healing`,
    );
  }
  const finalOutcome = (id: string): Outcome | null => {
    const stored = (log.durable.get(id) ?? log.forgotten.get(id))?.outcome;
    if (stored) return stored;
    const states = [...participants.values()].map((p) => p.states.get(id));
    if (states.includes('committed')) return 'commit';
    return states.includes('aborted') ? 'abort' : null;
  };
  for (const [id, outcome] of told) {
    const final = finalOutcome(id);
    if (final !== outcome) {
      checks.fail(
        'what a client was told survives: an acknowledged outcome is the outcome',
        `${id}: told ${outcome}, ended ${final}`,
      );
    }
  }
  for (const id of begun) {
    if (!log.durable.has(id) && !log.forgotten.has(id)) {
      checks.fail('an acknowledged begin is never lost', `${id} is in no log`);
    }
  }
  let committed = 0;
  let aborted = 0;
  for (const id of begun) {
    const o = finalOutcome(id);
    if (o === 'commit') committed++;
    if (o === 'abort') aborted++;
  }
  if (options.trace) {
    for (const id of begun) {
      const tx = log.durable.get(id) ?? log.forgotten.get(id);
      const states = [...participants.values()].map((p) => `${p.name}=${p.states.get(id) ?? '-'}`).join(' ');
      options.trace(`${id} ${tx?.state} ${tx?.outcome} ${tx?.abortReason ?? ''} told=${told.get(id) ?? '-'} ${states}`);
    }
  }
  return {
    seed: options.seed,
    violations: checks.violations,
    steps: world.steps,
    simulatedMs: world.now - START_MS,
    transactions: begun.size,
    committed,
    aborted,
    coordinatorCrashes: crashes,
  };
}

const START_MS = new World(new Rng(1)).now;
