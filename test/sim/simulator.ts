// The deterministic simulator: the real protocol/ and coordinator/ code,
// driven by one seed, against simulated time, log, network and participants.
// A run has a fault phase (message loss, duplication, reordering, partitions,
// participant and coordinator crashes, clients doing everything the API
// allows) and then a healing phase in which every transaction must finish.
// Invariants are checked at every step where the thing they guard happens
// (see checks.ts for the list and where each is checked).

import { Coordinator } from '../../src/coordinator/coordinator.js';
import { CallLimiter } from '../../src/participants/call-limiter.js';
import { answerWaitMsMax, commitAnswer, prepareAnswer } from '../../src/protocol/answers.js';
import { ID_SHARDS } from '../../src/protocol/transaction-ids.js';
import { step as realStep } from '../../src/protocol/transitions.js';
import type { Outcome, Transaction } from '../../src/protocol/types.js';
import type { TimerHandle, Timers } from '../../src/timers.js';
import { Checks, type Violation } from './checks.js';
import { SimLog, type SimLogBugs } from './sim-log.js';
import { scheduleOtherDeployment } from './sim-other-deployment.js';
import { type Faults, type Incarnation, SimClient, SimNetwork, SimParticipant } from './sim-participants.js';
import { SimPlacement } from './sim-placement.js';
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
  /** A second deployment sharing the participants' database server runs under the simulated one's identity. */
  readonly sharedDeploymentId?: boolean;
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
  /** Takeovers by another instance while the owner still ran (it went on, stale, for a while). */
  readonly takeovers: number;
  /** A line per transaction: its stored state and outcome, what its client was told, each participant's state. */
  readonly trace: readonly string[];
}

const PARTICIPANTS = ['alpha', 'bravo', 'charlie'];
const CALL_TIMEOUT_MS = 200;
/** The largest step of the coordinator's wall clock, either way: longer than most deadlines. */
const CLOCK_STEP_MS_MAX = 3000;
/** How far behind the wall clock may be when the coordinator restarts: longer than any deadline here. */
const BOOT_CLOCK_LAG_MS_MAX = 10_000;
const HEAL_LIMIT_MS = 120_000;
/** How long an instance that slept through a takeover goes on believing it owns what it had. */
const STALE_BELIEF_MS_MAX = 1500;
/** Of the calls and inquiries made while a stale instance runs, the share that reach it (a load balancer sends anywhere). */
const STALE_TRAFFIC_SHARE = 0.3;

/** One coordinator process: what it runs on, and what it believes it owns. */
interface Instance {
  readonly coordinator: Coordinator;
  readonly incarnation: Incarnation;
  readonly placement: SimPlacement;
}

export async function simulate(options: SimOptions): Promise<SimResult> {
  const simulation = new Simulation(options);
  simulation.scheduleFaults();
  simulation.scheduleClients();
  await simulation.runFaultPhase();
  await simulation.heal();
  simulation.checkNothingLeftInDoubt();
  simulation.checkWhatClientsWereTold();
  simulation.checkHistories();
  simulation.checkResolutions();
  await simulation.checkOutcomeInquiry();
  return simulation.result();
}

/** One run: the world, its participants, the coordinator process, its clients, and what they saw. */
class Simulation {
  private readonly rng: Rng;
  /**
   * Draws operators' actions (retry now, an admin's abort) from a stream of
   * their own: the draws of the main stream stay what they were.
   */
  private readonly operatorRng: Rng;
  /**
   * Draws operators' resolves of heuristic outcomes, in the runs where
   * participants decide heuristically (the other runs replay as before).
   */
  private readonly resolveRng: Rng;
  private readonly world: World;
  private readonly checks: Checks;
  private readonly faultMs: number;
  private readonly maxSteps: number;
  private readonly faults: Faults;
  private readonly log: SimLog;
  private readonly crashAfterSendRate: number;
  private readonly network: SimNetwork;
  private readonly participants = new Map<string, SimParticipant>();
  private readonly callSlots: number;
  // --- the coordinator process, which crashes and restarts
  private incarnation: Incarnation = { alive: false };
  private coordinator: Coordinator | null = null;
  private placement: SimPlacement | null = null;
  private crashes = 0;
  /**
   * Several instances: the one that owned everything before a takeover,
   * still running and believing it does, until it learns otherwise.
   */
  private stale: Instance | null = null;
  private takeovers = 0;
  /** Draws of the takeover faults, from a stream of their own. */
  private readonly clusterRng: Rng;
  /**
   * The wall clock the coordinator reads: simulated time plus an offset that
   * steps back and forward while it runs and across its restarts (a clock set
   * by an operator, or by NTP after a boot). Its timers run on simulated
   * time, which never steps, as real timers do.
   */
  private clockOffsetMs = 0;
  // --- what clients did and heard
  private readonly begun = new Set<string>();
  private readonly told = new Map<string, Outcome>();
  private faultEndMs = 0;

  constructor(private readonly options: SimOptions) {
    const rng = new Rng(options.seed);
    this.rng = rng;
    this.operatorRng = new Rng(options.seed + 0x0e7a7);
    this.resolveRng = new Rng(options.seed + 0x4e501);
    this.clusterRng = new Rng(options.seed + 0xc1a55);
    this.world = new World(rng);
    this.checks = new Checks(() => ({ atMs: this.world.now - START_MS, step: this.world.steps }));
    this.faultMs = options.faultMs ?? rng.int(1000, 4000);
    this.maxSteps = options.maxSteps ?? 400_000;
    this.faults = {
      enabled: true,
      lossRate: rng.pick([0, 0, 0.01, 0.05, 0.15]),
      duplicateRate: rng.pick([0, 0.05, 0.2]),
      longDelayRate: rng.pick([0, 0.05, 0.2]),
      crashAfterActingRate: rng.pick([0, 0.01, 0.05]),
    };
    const heuristics = rng.chance(0.1);
    this.log = new SimLog(this.world, this.checks, rng.int(0, 5), options.logBugs);
    this.log.checkResolutionsBeforeCompaction = true;
    // An operator resolves a heuristic outcome some time after it shows,
    // through whichever instance the call reaches: while an instance that
    // slept through a takeover still runs, most often that one.
    this.log.onHeuristic = (id) => {
      const r = this.resolveRng;
      if (!r.chance(0.7)) return;
      this.world.at(r.int(0, 1500), () => void this.resolveByHand(id, r.chance(0.7)));
    };
    // A slow disk in some runs: now and then a flush takes seconds, longer
    // than a caller may wait for its answer.
    const slowFlushRate = rng.pick([0, 0, 0.01, 0.05]);
    this.log.slowFlushMs = () => (this.faults.enabled && rng.chance(slowFlushRate) ? rng.int(500, 2500) : 0);
    // Crashes right after a message leaves, inside the window where what led
    // to it may not be written yet (a lazy record waits for its flush): most
    // often after an abort, the message the protocol may send before its
    // decision is on disk.
    this.crashAfterSendRate = rng.pick([0, 0.05, 0.25, 0.5]);
    this.network = new SimNetwork(this.world, this.faults);
    for (const name of PARTICIPANTS) {
      const profile = {
        noRate: rng.pick([0, 0, 0.02, 0.2]),
        readOnlyRate: rng.pick([0, 0.1]),
        heuristicRate: heuristics ? 0.2 : 0,
      };
      const peers = () => [...this.participants.values()];
      this.participants.set(name, new SimParticipant(name, this.world, this.checks, this.faults, profile, peers));
    }
    // Few call slots in some runs, so calls wait in the queue behind slow ones.
    this.callSlots = rng.pick([1, 2, 4, 64]);
    this.log.crashAfterFlush = () => {
      if (!this.faults.enabled || !rng.chance(0.02)) return false;
      this.crash();
      return true;
    };
    void this.start();
    this.letParticipantsInquire();
    // From a stream of its own: the other draws stay what they were.
    scheduleOtherDeployment(
      this.world,
      new Rng(options.seed + 0xde910),
      () => this.participants.values(),
      this.faultMs + 2000,
      options.runtimeBugs?.sharedDeploymentId === true,
    );
  }

  /**
   * Starts a coordinator process on the log, as a restart does: it recovers
   * first. Resolves once it has (its sweep is scheduled from then on).
   */
  private async start(): Promise<void> {
    // One coordinator process at a time, as the log's lock guarantees.
    if (this.incarnation.alive) return;
    const { world, rng, faults, options } = this;
    const incarnation: Incarnation = { alive: true };
    const timers: Timers = {
      now: () => world.now + this.clockOffsetMs,
      monotonicMs: () => world.now,
      after: (ms, fn) => {
        const handle = { cancelled: false };
        world.at(ms, () => {
          if (incarnation.alive && !handle.cancelled) fn();
        });
        return handle as TimerHandle;
      },
      cancel: (handle) => {
        (handle as { cancelled: boolean }).cancelled = true;
      },
    };
    const client = new SimClient(
      world,
      this.network,
      this.participants,
      incarnation,
      this.log,
      this.checks,
      CALL_TIMEOUT_MS,
      new CallLimiter(this.callSlots, timers),
      options.runtimeBugs?.callTimeFromWire,
    );
    client.onSent = (action) => {
      const rate = action === 'abort' ? this.crashAfterSendRate : this.crashAfterSendRate / 10;
      // At the next simulated instant, not inside the step that sent it: a
      // process dies between instructions, and this one's step must not go on
      // running (writing to the log, answering callers) after its death.
      // What it queued for a later flush is lost with it.
      if (faults.enabled && rng.chance(rate)) world.at(0, () => this.crash());
    };
    const placement = new SimPlacement(this.log, this.log.ownerEpoch);
    const owner: { coordinator: Coordinator | null } = { coordinator: null };
    // Fenced records: the coordinator hands the transaction on, as the member does.
    const log = this.log.handle(placement.epoch, (tx) => {
      void owner.coordinator?.writeRefused(tx.id, 'fenced').catch(() => {});
    });
    const coordinator = new Coordinator({
      log,
      placement,
      participants: client,
      timers,
      random: () => rng.next(),
      entropy: (n) => rng.bytes(n),
      onInvariantViolation: (e) => this.checks.fail('the coordinator asserts its own invariants', e.message),
      protocolStep: options.protocolStep ?? realStep,
      defaultTimeoutMs: 2000,
      inFlightMax: 10_000,
      inFlightBytesMax: 1_000_000,
      inFlightPerCallerMax: 0,
      inFlightBytesPerCallerMax: 0,
      participantsMax: 8,
      retryDelayMsMin: 5,
      retryDelayMsMax: 200,
      stuckAfterAttempts: 10,
      answerWaitMsMax: answerWaitMsMax(CALL_TIMEOUT_MS, CALL_TIMEOUT_MS),
      sweepIntervalMs: 50,
      retentionMs: 500,
      idempotencyKeyRetentionMs: 5000,
      compactionBatchMax: 100,
      // Small budgets, so recovered transactions wait their turn and meet
      // clients, deadlines and inquiries before their recovery step. From the
      // seed, not the rng: every seed's other choices stay as they were.
      recoveryCallsMax: 1 + (options.seed % 4),
    });
    owner.coordinator = coordinator;
    const recovered = coordinator.recover();
    this.incarnation = incarnation;
    this.coordinator = coordinator;
    this.placement = placement;
    await recovered;
  }

  /** The process dies: what it had not flushed is gone; it restarts a little later. */
  private crash(): void {
    if (!this.incarnation.alive) return;
    this.incarnation.alive = false;
    this.coordinator = null;
    this.log.crash();
    this.crashes++;
    // A restart is where a stepped clock does harm: what the last run
    // decided by the clock, the next one judges by another. Most often it is
    // behind (set at boot, before NTP corrects it).
    if (this.faults.enabled) this.clockOffsetMs = this.rng.chance(0.7) ? -this.rng.int(0, BOOT_CLOCK_LAG_MS_MAX) : 0;
    this.world.at(this.rng.int(1, 300), () => void this.start());
  }

  /**
   * Another instance takes every transaction over while the owner still
   * runs (it was paused past the probes' patience, or cut off): the log's
   * epoch moves on, a new instance recovers everything, and the old one goes
   * on, believing, answering calls and inquiries, and writing (refused),
   * until it learns and lets go.
   */
  private takeover(): void {
    if (!this.incarnation.alive || this.stale !== null || !this.coordinator || !this.placement) return;
    const stale: Instance = { coordinator: this.coordinator, incarnation: this.incarnation, placement: this.placement };
    this.stale = stale;
    this.takeovers++;
    this.log.takeover();
    this.incarnation = { alive: false };
    this.coordinator = null;
    this.placement = null;
    void this.start();
    this.world.at(this.clusterRng.int(0, STALE_BELIEF_MS_MAX), () => this.retireStale());
    // An operator deals with the heuristic outcomes known now, and the
    // call reaches the instance that only believes it owns them.
  }

  /** The stale instance learns it no longer owns anything: it lets go of every transaction. */
  private retireStale(): void {
    const stale = this.stale;
    if (!stale) return;
    this.stale = null;
    stale.placement.believes = false;
    stale.coordinator.drop(Array.from({ length: ID_SHARDS }, (_, shard) => shard));
    stale.incarnation.alive = false;
  }

  /** Whom a call or an inquiry reaches: now and then the stale instance, while one runs. */
  private reached(): Coordinator | null {
    if (this.stale?.incarnation.alive && this.clusterRng.chance(STALE_TRAFFIC_SHARE)) return this.stale.coordinator;
    return this.coordinator;
  }

  private stepClock(): void {
    // NTP keeps a running clock within bounds of true time.
    const stepped = this.clockOffsetMs + this.rng.int(-CLOCK_STEP_MS_MAX, CLOCK_STEP_MS_MAX);
    this.clockOffsetMs = Math.max(-BOOT_CLOCK_LAG_MS_MAX, Math.min(BOOT_CLOCK_LAG_MS_MAX, stepped));
  }

  /** Prepared participants ask the running coordinator, over the network. */
  private letParticipantsInquire(): void {
    for (const p of this.participants.values()) {
      p.inquire = (txId, answer) => {
        this.network.request(
          p,
          () => {
            const c = this.reached();
            if (!c) return;
            // An instance that cannot say (another one owns it) answers
            // nothing the participant acts on: it asks again later.
            c.reads.outcome(txId).then(
              (outcome) => this.network.reply(p, () => answer(outcome)),
              () => {},
            );
          },
          () => {},
        );
      };
    }
  }

  /** Coordinator crashes, clock steps, participant crashes and partitions, all within the fault phase. */
  scheduleFaults(): void {
    const { world, rng, faultMs } = this;
    const coordinatorCrashes = rng.int(0, 4);
    for (let i = 0; i < coordinatorCrashes; i++) world.at(rng.int(0, faultMs), () => this.crash());
    for (let i = rng.int(0, 2); i > 0; i--) world.at(rng.int(0, faultMs), () => this.stepClock());
    const cluster = this.clusterRng;
    for (let i = cluster.pick([0, 0, 1, 2]); i > 0; i--) world.at(cluster.int(0, faultMs), () => this.takeover());
    for (const p of this.participants.values()) {
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
  }

  /** Clients that begin at random times in the fault phase and do whatever the API allows. */
  scheduleClients(): void {
    const clientCount = this.rng.int(4, 14);
    let keys = 0;
    for (let i = 0; i < clientCount; i++) {
      this.world.at(this.rng.int(0, this.faultMs), () => {
        const oneShot = this.rng.chance(0.5);
        const key = this.rng.chance(0.5) ? `key-${keys++}` : null;
        void this.runClient(oneShot, key);
      });
    }
  }

  private async runClient(oneShot: boolean, key: string | null): Promise<void> {
    const rng = this.rng;
    const request = {
      participants: this.pickParticipants(),
      timeoutMs: rng.int(300, 3000),
      idempotencyKey: key,
      idempotencyScope: '',
      callerId: '',
      requestHash: key,
      metadataJson: null,
      commit: oneShot,
      by: null,
      // Half the clients trace (those with a key: no draw of its own, so
      // every seed replays as before); the log checks it is never lost.
      traceParent: key === null ? null : simTraceParent(key),
    };
    const begin = await this.attempt((c) => c.begin(request));
    if (!begin) return;
    this.begun.add(begin.tx.id);
    const id = begin.tx.id;
    if (oneShot) {
      this.readCommitAnswer(begin);
      if (rng.chance(0.3)) this.readCommitAnswer(await this.attempt((c) => c.commit(id)));
      return;
    }
    if (rng.chance(0.3)) {
      const extra = PARTICIPANTS.filter((n) => !request.participants.some((p) => p.name === n));
      if (extra.length > 0) {
        const name = rng.pick(extra);
        await this.attempt((c) =>
          c.enlist(id, { name, url: this.participant(name).url, database: null, payloadJson: null }),
        );
      }
    }
    await this.sleep(rng.int(0, 500));
    if (rng.chance(0.5)) {
      const prepared = await this.attempt((c) => c.prepare(id));
      if (prepared && prepareAnswer(prepared.tx, prepared.refusal !== null) === 'aborted') {
        this.tell(prepared.tx, 'abort');
      }
      // Sometimes the client comes back only after the deadline.
      await this.sleep(rng.chance(0.5) ? rng.int(0, 3000) : rng.int(0, 500));
    }
    const abort = rng.chance(0.25);
    const operator = this.operatorRng;
    const by = { by: null, operator: operator.chance(0.3) };
    if (operator.chance(0.2)) {
      // An operator presses "retry now" at some point of the transaction's life.
      this.world.at(operator.int(0, 4000), () => {
        void this.attempt((c) => c.retry(id, { by: null, operator: true }));
      });
    }
    for (let n = rng.chance(0.3) ? 2 : 1; n > 0; n--) {
      if (abort) {
        const a = await this.attempt((c) => c.abort(id, by));
        if (a && !a.refusal) this.tell(a.tx, 'abort');
        if (a?.refusal) this.tell(a.tx, 'commit');
      } else {
        this.readCommitAnswer(await this.attempt((c) => c.commit(id)));
      }
    }
  }

  /** An operator's resolve, retried a few times; `atStale`: the first try reaches the stale instance, if one runs. */
  private async resolveByHand(id: string, atStale: boolean): Promise<void> {
    const r = this.resolveRng;
    for (let i = 0; i < 4; i++) {
      const c = i === 0 && atStale && this.stale?.incarnation.alive ? this.stale.coordinator : this.reached();
      const done = await c?.resolveHeuristics(id, null, 'settled by hand', { by: null, operator: true }).then(
        () => true,
        () => false,
      );
      if (done) return;
      await this.sleep(r.int(50, 400));
    }
  }

  private pickParticipants() {
    return PARTICIPANTS.filter(() => this.rng.chance(0.6)).map((name) => ({
      name,
      url: this.participant(name).url,
      database: null,
      payloadJson: null,
    }));
  }

  private participant(name: string): SimParticipant {
    return this.participants.get(name) as SimParticipant;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => this.world.at(ms, resolve));
  }

  /** One call to whichever coordinator runs now; a crash mid-call is a timeout, retried a few times. */
  private async attempt<T>(call: (c: Coordinator) => Promise<T>): Promise<T | null> {
    for (let i = 0; i < 4; i++) {
      const c = this.reached();
      if (c) {
        const result = await Promise.race([call(c).catch(() => null), this.sleep(3000).then(() => null)]);
        if (result !== null) return result;
      }
      await this.sleep(this.rng.int(50, 400));
    }
    return null;
  }

  /**
   * Clients read answers as the API maps them to status codes: 200 and 202
   * say commit, 409 says abort, a pending 503 says nothing.
   */
  private readCommitAnswer(a: { tx: Transaction; refusal: unknown } | null): void {
    if (!a) return;
    let answer = commitAnswer(a.tx, a.refusal !== null);
    if (answer === 'undecided' && this.options.runtimeBugs?.undecidedAnsweredAccepted) answer = 'commit-decided';
    if (answer === 'aborted') this.tell(a.tx, 'abort');
    if (answer === 'committed' || answer === 'commit-decided') this.tell(a.tx, 'commit');
  }

  private tell(tx: Transaction | undefined, outcome: Outcome | null): void {
    if (!tx || outcome === null) return;
    const before = this.told.get(tx.id);
    if (before && before !== outcome) {
      this.checks.fail(
        'an outcome, once decided, never changes',
        `${tx.id}: a client was told ${before}, then ${outcome}`,
      );
    }
    this.told.set(tx.id, outcome);
  }

  async runFaultPhase(): Promise<void> {
    const world = this.world;
    this.faultEndMs = world.now + this.faultMs;
    while (world.now < this.faultEndMs && world.steps < this.maxSteps && (await world.step())) {}
  }

  /** Faults stop; the coordinator runs; every transaction must finish within the healing limit. */
  async heal(): Promise<void> {
    const world = this.world;
    this.faults.enabled = false;
    for (const p of this.participants.values()) p.partitioned = false;
    this.retireStale();
    // Awaited: until recovery has run, nothing of the new process is scheduled.
    if (!this.incarnation.alive) await this.start();
    const healDeadline = world.now + HEAL_LIMIT_MS;
    while (world.steps < this.maxSteps && world.now < healDeadline) {
      if (world.steps % 50 === 0 && this.coordinator?.inFlight === 0 && !this.anyPrepared()) break;
      if (!(await world.step())) break;
    }
  }

  private anyPrepared(): boolean {
    return [...this.participants.values()].some((p) => [...p.states.values()].includes('prepared'));
  }

  checkNothingLeftInDoubt(): void {
    const liveness = 'liveness: when faults stop, every transaction finishes and no participant stays prepared';
    for (const p of this.participants.values()) {
      for (const [txId, state] of p.states) {
        if (state === 'prepared') this.checks.fail(liveness, `${txId}: ${p.name} still prepared`);
      }
    }
    const c = this.coordinator;
    if (c && c.inFlight > 0) {
      this.checks.fail(
        liveness,
        `${c.inFlight} transactions unfinished after ${this.world.now - this.faultEndMs} ms of healing`,
      );
    }
  }

  checkWhatClientsWereTold(): void {
    for (const [id, outcome] of this.told) {
      const final = this.finalOutcome(id);
      if (final !== outcome) {
        this.checks.fail(
          'what a client was told survives: an acknowledged outcome is the outcome',
          `${id}: told ${outcome}, ended ${final}`,
        );
      }
    }
    for (const id of this.begun) {
      if (!this.log.durable.has(id) && !this.log.forgotten.has(id)) {
        this.checks.fail('an acknowledged begin is never lost', `${id} is in no log`);
      }
    }
  }

  /**
   * The outcome inquiry never answers the contrary outcome, for a
   * transaction that is finished and forgotten (compacted) as much as for
   * one still held: asked of the running coordinator after healing, for
   * every transaction begun.
   */
  async checkOutcomeInquiry(): Promise<void> {
    const c = this.coordinator;
    if (!c) return;
    for (const id of this.begun) {
      const final = this.finalOutcome(id);
      if (final === null) continue;
      let answer: string;
      try {
        answer = await c.reads.outcome(id);
      } catch {
        continue; // another instance's to say: nothing was answered
      }
      if ((answer === 'commit' || answer === 'abort') && answer !== final) {
        const where = this.log.durable.has(id) ? 'held' : 'forgotten';
        this.checks.fail(
          'the outcome inquiry never answers the contrary outcome',
          `${id} (${where}): ended ${final}, the inquiry answered ${answer}`,
        );
      }
    }
  }

  /** A decision in a history is the decision: recorded only once it was on disk. */
  checkHistories(): void {
    for (const [id, entries] of this.log.durableHistory) {
      const stored = this.log.durable.get(id)?.outcome ?? null;
      for (const e of entries) {
        if (e.type === 'decided' && e.outcome !== stored) {
          this.checks.fail(
            "a transaction's history never contradicts its decision",
            `${id}: history says ${e.outcome}, log ${stored} ${JSON.stringify(entries.map((x) => x.type))}`,
          );
        }
      }
    }
  }

  /** An operator's resolve is applied once, and in the history (the log checks too, before it forgets one). */
  checkResolutions(): void {
    for (const id of this.log.durable.keys()) this.log.checkResolutionsRecorded(id);
  }

  private finalOutcome(id: string): Outcome | null {
    const stored = (this.log.durable.get(id) ?? this.log.forgotten.get(id))?.outcome;
    if (stored) return stored;
    const states = [...this.participants.values()].map((p) => p.states.get(id));
    if (states.includes('committed')) return 'commit';
    return states.includes('aborted') ? 'abort' : null;
  }

  result(): SimResult {
    let committed = 0;
    let aborted = 0;
    for (const id of this.begun) {
      const o = this.finalOutcome(id);
      if (o === 'commit') committed++;
      if (o === 'abort') aborted++;
    }
    const trace: string[] = [];
    for (const id of this.begun) {
      const tx = this.log.durable.get(id) ?? this.log.forgotten.get(id);
      const states = [...this.participants.values()].map((p) => `${p.name}=${p.states.get(id) ?? '-'}`).join(' ');
      trace.push(
        `${id} ${tx?.state} ${tx?.outcome} ${tx?.abortReason ?? ''} told=${this.told.get(id) ?? '-'} ${states}`,
      );
    }
    for (const line of trace) this.options.trace?.(line);
    return {
      seed: this.options.seed,
      violations: this.checks.violations,
      steps: this.world.steps,
      simulatedMs: this.world.now - START_MS,
      transactions: this.begun.size,
      committed,
      aborted,
      coordinatorCrashes: this.crashes,
      takeovers: this.takeovers,
      trace,
    };
  }
}

const START_MS = new World(new Rng(1)).now;

/** A valid traceparent of its own for each key. */
function simTraceParent(key: string): string {
  const hex = Buffer.from(key).toString('hex').padStart(32, '1').slice(-32);
  return `00-${hex}-${hex.slice(0, 16)}-01`;
}
