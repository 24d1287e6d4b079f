// The runtime around the pure protocol: it feeds events to protocol/step,
// performs the effects in order (a forced write is on disk before anything
// after it), drives participants, enforces deadlines, recovers at start and
// forgets finished transactions after their retention.
//
// Each transaction's events are applied one at a time (a promise chain per
// transaction), so effects happen in the order the protocol emitted them.
// Readers see `published`: the transaction as of its last completed step,
// never a decision still on its way to disk.

import type { DecisionLog, ListPage, ListQuery } from '../log/decision-log.js';
import type { Metrics } from '../metrics.js';
import type { ParticipantClient } from '../participants/participant-client.js';
import { abortCallMayAnswer, commitCallMayAnswer, prepareCallMayAnswer } from '../protocol/answers.js';
import { assert, InvariantError } from '../protocol/assert.js';
import { createTransaction, step } from '../protocol/transitions.js';
import type { Effect, Event, NewParticipant, Outcome, Refusal, Step, Transaction, TxState } from '../protocol/types.js';
import { realTimers, type TimerHandle, type Timers } from '../timers.js';
import { retryDelayMs } from './backoff.js';
import { ConflictError, LimitError, NotFoundError, UnavailableError } from './errors.js';
import { scopedKey } from './idempotency-keys.js';
import { IdGenerator } from './ids.js';

export interface CoordinatorOptions {
  readonly log: DecisionLog;
  readonly participants: ParticipantClient;
  readonly metrics: Metrics;
  /** Clock and timers; real ones unless a simulation passes its own. */
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Random bytes for transaction ids. */
  readonly entropy?: (bytes: number) => Buffer;
  /**
   * Called on an invariant violation (a bug). Default: crash the process, which
   * the log makes safe. The simulator records it instead.
   */
  readonly onInvariantViolation?: (error: InvariantError) => void;
  /**
   * The protocol's transition function. Always the real one in service; the
   * simulator's planted-bug tests wrap it to prove the checks catch bugs.
   */
  readonly protocolStep?: typeof step;
  readonly defaultTimeoutMs: number;
  readonly maxInFlight: number;
  readonly maxParticipants: number;
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
  /** A participant is reported stuck after this many failed phase-two attempts. */
  readonly stuckAfterAttempts: number;
  /** Longest a call waits for its answer (answerWaitMsMax in protocol/answers.ts). */
  readonly answerWaitMsMax: number;
  readonly sweepIntervalMs: number;
  readonly retentionMs: number;
  /** How long an idempotency key finds its transaction after the transaction finished (its details may be gone). */
  readonly idempotencyKeyRetentionMs: number;
  readonly compactionBatch: number;
  /**
   * Recovery hands out its transactions' steps while fewer participant calls
   * than this are outstanding (default 256), instead of all at once.
   */
  readonly recoveryCallsMax?: number;
  readonly onError?: (error: Error, context: string) => void;
  /** A participant decided against the outcome on its own: not commitd's error, but an operator must hear of it. */
  readonly onHeuristic?: (message: string) => void;
}

export interface BeginRequest {
  readonly participants: readonly NewParticipant[];
  readonly timeoutMs: number | null;
  readonly idempotencyKey: string | null;
  /** Whose key it is (an identity of the caller's token; '' without tokens): another scope never finds it. */
  readonly idempotencyScope: string;
  readonly requestHash: string | null;
  readonly metadataJson: string | null;
  readonly commit: boolean;
}

export interface Answer {
  readonly tx: Transaction;
  readonly refusal: Refusal | null;
  /** The call changed something (a new transaction, a new participant). */
  readonly created: boolean;
}

interface Waiter {
  readonly until: (tx: Transaction) => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface Driver {
  /** The newest state; what the next event is applied to. */
  tx: Transaction;
  /** What readers see: durable as far as anyone was promised. Undefined until begin is on disk. */
  published: Transaction | undefined;
  chain: Promise<unknown>;
  waiters: Set<Waiter>;
  retryTimers: Set<TimerHandle>;
  /** Set once the commit decision is on disk; no commit message leaves before. */
  commitDurable: boolean;
  phaseOneStartedMs: number | null;
  begun: Promise<void>;
}

const ACTIVE_STATES: readonly TxState[] = ['active', 'preparing', 'prepared', 'committing', 'aborting'];

export class Coordinator {
  private readonly live = new Map<string, Driver>();
  /** Idempotency keys of the transactions in `live`; finished ones are found in the log. */
  private readonly keys = new Map<string, string>();
  private readonly ids: IdGenerator;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly step: typeof step;
  private sweepTimer: TimerHandle | null = null;
  private accepting = false;
  private stopped = false;
  /** Participant calls made and not yet answered (the client always answers, if only with a timeout). */
  private callsOutstanding = 0;
  /** Recovered transactions whose recovery step has not been dispatched yet, from `recoveryNext` on. */
  private recoveryQueue: Driver[] = [];
  private recoveryNext = 0;
  private recoveryStepsRunning = 0;

  constructor(private readonly o: CoordinatorOptions) {
    this.timers = o.timers ?? realTimers;
    this.random = o.random ?? Math.random;
    this.step = o.protocolStep ?? step;
    this.ids = new IdGenerator(o.entropy);
    o.metrics.collectInFlight = () => this.collectInFlight();
  }

  /**
   * Loads every unfinished transaction from the log and drives it on. Returns
   * once each is live (see pumpRecovery for how their steps are handed out):
   * from then on new work is safe to accept.
   */
  recover(): number {
    const loaded = this.o.log.loadUnfinished();
    for (const tx of loaded) {
      const d = this.track(tx);
      d.published = tx;
      d.commitDurable = tx.outcome === 'commit';
      this.recoveryQueue.push(d);
    }
    this.pumpRecovery();
    this.o.metrics.recovered.inc(loaded.length);
    this.accepting = true;
    this.scheduleSweep();
    return loaded.length;
  }

  /**
   * Every recovered transaction is live (readable, answerable, its deadline
   * kept) from the start, but its recovery step is handed out only while few
   * participant calls are outstanding: tens of thousands of messages at once
   * would sit in queues long enough to outlive the young generation, and the
   * heap would grow by all of them before a major collection. Any event that
   * reaches a queued transaction first (a client's call, its deadline) is
   * handled as it would be after its recovery step, which is idempotent.
   */
  private pumpRecovery(): void {
    const max = this.o.recoveryCallsMax ?? 256;
    while (this.recoveryNext < this.recoveryQueue.length && this.callsOutstanding + this.recoveryStepsRunning < max) {
      const d = this.recoveryQueue[this.recoveryNext++] as Driver;
      this.recoveryStepsRunning++;
      this.dispatch(d, { type: 'recover' })
        .catch((e) => this.fail(e, `recovering ${d.tx.id}`))
        .finally(() => {
          this.recoveryStepsRunning--;
          this.pumpRecovery();
        });
    }
    if (this.recoveryNext >= this.recoveryQueue.length && this.recoveryQueue.length > 0) {
      this.recoveryQueue = [];
      this.recoveryNext = 0;
    }
  }

  private callAnswered(): void {
    this.callsOutstanding--;
    if (this.recoveryNext < this.recoveryQueue.length) this.pumpRecovery();
  }

  get inFlight(): number {
    return this.live.size;
  }

  async begin(request: BeginRequest): Promise<Answer> {
    if (!this.accepting) throw new UnavailableError('commitd is not accepting new transactions', 1);
    const idempotencyKey =
      request.idempotencyKey === null ? null : scopedKey(request.idempotencyScope, request.idempotencyKey);
    if (idempotencyKey !== null) {
      const existing = await this.findByKey(idempotencyKey);
      if (existing) {
        if (existing.requestHash !== request.requestHash) {
          throw new ConflictError('this idempotency key was used for a different request');
        }
        // Finished, perhaps with only the key's snapshot left: answered from it.
        if (!this.live.has(existing.id)) return this.answerStored(existing, request.commit ? { type: 'commit' } : null);
        if (request.commit) return this.commit(existing.id);
        return { tx: existing, refusal: null, created: false };
      }
    }
    if (this.live.size >= this.o.maxInFlight) {
      throw new UnavailableError(`${this.o.maxInFlight} transactions in flight, the configured limit`, 1);
    }
    const nowMs = this.timers.now();
    const created = createTransaction({
      id: this.ids.next(nowMs),
      nowMs,
      timeoutMs: request.timeoutMs ?? this.o.defaultTimeoutMs,
      oneShot: request.commit,
      participants: request.participants,
      idempotencyKey,
      requestHash: request.requestHash,
      metadataJson: request.metadataJson,
    });
    const d = this.track(created.tx);
    d.begun = this.dispatchStep(d, created);
    d.chain = d.begun.catch(() => {});
    try {
      await d.begun;
    } catch (error) {
      this.forget(d);
      throw error;
    }
    this.o.metrics.transactionsBegun.inc();
    if (request.commit) return this.commit(created.tx.id);
    return { tx: d.published as Transaction, refusal: null, created: true };
  }

  async enlist(id: string, participant: NewParticipant): Promise<Answer> {
    const d = this.live.get(id);
    if (!d?.published) {
      const tx = this.read(id);
      return {
        tx,
        refusal: { code: 'not-active', detail: `transaction is ${tx.state}: it takes no more participants` },
        created: false,
      };
    }
    const known = d.tx.participants.some((p) => p.name === participant.name);
    if (!known && d.tx.participants.length >= this.o.maxParticipants) {
      throw new LimitError(`a transaction has at most ${this.o.maxParticipants} participants`);
    }
    const result = await this.dispatch(d, { type: 'enlist', participant });
    return { tx: d.published, refusal: result.refusal, created: result.effects.length > 0 };
  }

  /** Phase one only: answers once every vote is in (or the transaction aborted). */
  prepare(id: string): Promise<Answer> {
    return this.callAndWait(id, { type: 'prepare' }, prepareCallMayAnswer);
  }

  /**
   * Prepare if needed, decide, and drive phase two: answers once every
   * participant acknowledged or was tried once (then the caller gets 202 and
   * the coordinator keeps trying).
   */
  commit(id: string): Promise<Answer> {
    return this.callAndWait(id, { type: 'commit' }, commitCallMayAnswer);
  }

  abort(id: string): Promise<Answer> {
    return this.callAndWait(id, { type: 'abort' }, abortCallMayAnswer);
  }

  get(id: string): Transaction {
    return this.read(id);
  }

  /**
   * The participant inquiry. Only a durable decision is ever reported; an id
   * the log does not know was never decided commit (its record would be kept
   * until every participant acknowledged), so it is presumed aborted.
   */
  outcome(id: string): Outcome | 'pending' {
    const d = this.live.get(id);
    if (d) return d.published?.outcome ?? 'pending';
    return this.o.log.get(id)?.outcome ?? 'abort';
  }

  list(query: ListQuery): ListPage {
    try {
      this.o.log.flush();
    } catch (error) {
      // The page is read from the log, so what is queued for it goes first
      // (a state filter would miss it otherwise). With a full disk it cannot
      // go: that is the 503 of a log that cannot be written, not a 500.
      throw new UnavailableError(`the decision log cannot be written: ${(error as Error).message}`, 5);
    }
    const page = this.o.log.list(query);
    const transactions: Transaction[] = [];
    for (const stored of page.transactions) {
      // A live transaction may have moved on since its last write (votes are
      // not written one by one), or not be durable yet (its begin is still
      // waiting for its fsync): show what readers see elsewhere.
      const d = this.live.get(stored.id);
      const tx = d ? d.published : stored;
      if (tx && (query.state === null || tx.state === query.state)) transactions.push(tx);
    }
    return { transactions, next: page.next };
  }

  /** New transactions are refused from now on; the ones in flight go on. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Stop taking work, stop retrying, and write everything queued. Durable state stays as it is. */
  async stop(): Promise<void> {
    this.accepting = false;
    this.stopped = true;
    if (this.sweepTimer) this.timers.cancel(this.sweepTimer);
    for (const d of this.live.values()) {
      for (const t of d.retryTimers) this.timers.cancel(t);
      d.retryTimers.clear();
    }
    await Promise.allSettled([...this.live.values()].map((d) => d.chain));
    this.o.log.flush();
  }

  /** Aborts undecided transactions past their deadline and forgets finished ones past retention. */
  sweep(): void {
    const nowMs = this.timers.now();
    let stuck = 0;
    for (const d of this.live.values()) {
      if (d.published && d.tx.outcome === null && nowMs >= d.tx.deadlineMs) {
        this.dispatch(d, { type: 'deadline' }).catch((e) => this.fail(e, `deadline of ${d.tx.id}`));
      }
      for (const p of d.tx.participants) if (!p.acknowledged && p.attempts >= this.o.stuckAfterAttempts) stuck++;
    }
    this.o.metrics.stuckParticipants.set(stuck);
    try {
      const forgotten = this.o.log.compact(
        nowMs - this.o.retentionMs,
        nowMs - this.o.idempotencyKeyRetentionMs,
        this.o.compactionBatch,
      );
      this.o.metrics.compacted.inc(forgotten);
    } catch (error) {
      this.fail(error, 'compacting the log');
    }
  }

  private async callAndWait(id: string, event: Event, until: (tx: Transaction) => boolean): Promise<Answer> {
    const d = this.live.get(id);
    if (!d?.published) return this.answerStored(this.read(id), event);
    const result = await this.dispatch(d, event);
    if (result.refusal) return { tx: d.published, refusal: result.refusal, created: false };
    await this.waitFor(d, until);
    return { tx: d.published, refusal: null, created: false };
  }

  /** A finished transaction: the protocol answers from the stored state, which nothing changes any more. */
  private answerStored(stored: Transaction, event: Event | null): Answer {
    if (event === null) return { tx: stored, refusal: null, created: false };
    const result = this.step(stored, event, this.timers.now());
    assert(result.effects.length === 0, 'a finished transaction takes no more effects');
    return { tx: stored, refusal: result.refusal, created: false };
  }

  private read(id: string): Transaction {
    // A live transaction with nothing published yet is one whose begin record
    // is written but not yet fsynced: nobody was told of it, and it may not
    // survive a power loss, so it does not exist for readers yet (the log
    // would already return it).
    const d = this.live.get(id);
    const tx = d ? d.published : this.o.log.get(id);
    if (!tx) throw new NotFoundError(`no transaction ${id}`);
    return tx;
  }

  private async findByKey(key: string): Promise<Transaction | undefined> {
    const id = this.keys.get(key);
    const d = id === undefined ? undefined : this.live.get(id);
    if (d) {
      await d.begun;
      return d.published;
    }
    return this.o.log.findByIdempotencyKey(key);
  }

  private track(tx: Transaction): Driver {
    const d: Driver = {
      tx,
      published: undefined,
      chain: Promise.resolve(),
      waiters: new Set(),
      retryTimers: new Set(),
      commitDurable: false,
      phaseOneStartedMs: null,
      begun: Promise.resolve(),
    };
    this.live.set(tx.id, d);
    if (tx.idempotencyKey !== null) this.keys.set(tx.idempotencyKey, tx.id);
    return d;
  }

  private forget(d: Driver): void {
    if (this.live.get(d.tx.id) !== d) return;
    this.live.delete(d.tx.id);
    if (d.tx.idempotencyKey !== null) this.keys.delete(d.tx.idempotencyKey);
    for (const t of d.retryTimers) this.timers.cancel(t);
    for (const w of d.waiters) w.resolve();
  }

  private dispatch(d: Driver, event: Event): Promise<Step> {
    const run = d.chain.then(async () => {
      // After stop, answers still arriving change nothing: what is on disk
      // is what the next start recovers from.
      if (this.stopped) return { tx: d.tx, effects: [], refusal: null };
      const result = this.step(d.tx, event, this.timers.now());
      await this.dispatchStep(d, result);
      return result;
    });
    d.chain = run.catch(() => {});
    return run.catch((error) => {
      if (error instanceof InvariantError) this.violated(error);
      throw error;
    });
  }

  /** Performs one step's effects in order; a forced write blocks everything after it. */
  private async dispatchStep(d: Driver, result: Step): Promise<void> {
    if (result.tx === d.tx && result.effects.length === 0) return;
    const before = d.tx;
    d.tx = result.tx;
    const finished = result.effects.some((e) => e.type === 'finished');
    for (const effect of result.effects) {
      if (effect.type === 'persist') {
        if (effect.forced) {
          try {
            await this.o.log.writeForced(result.tx);
          } catch (error) {
            // Not on disk, so it did not happen: nothing after it ran.
            d.tx = before;
            const unavailable = new UnavailableError(
              `the decision log cannot be written: ${(error as Error).message}`,
              5,
            );
            // A caller waiting on this transaction (a commit waiting for the
            // decision the last vote leads to) would otherwise wait for a step
            // that did not happen and then answer as if it had: a 202 with no
            // decision on disk (seen with a full disk). It hears the 503 now.
            for (const w of d.waiters) w.reject(unavailable);
            // Every prepare was answered but what the answers led to (a commit
            // decision, the prepared record) is not on disk, and the last vote
            // went with the step: only the deadline would move this
            // transaction, and a retried commit would wait for that vote.
            // Abort it now, as recovery after a crash at this instant would.
            if (before.state === 'preparing') {
              this.dispatch(d, { type: 'recover' }).catch((e) =>
                this.fail(e, `aborting ${d.tx.id} after a failed write`),
              );
            }
            throw unavailable;
          }
          if (result.tx.outcome === 'commit') d.commitDurable = true;
        } else {
          this.o.log.writeLazy(result.tx, finished ? () => this.forget(d) : undefined);
        }
      } else if (effect.type === 'send') {
        this.send(d, effect);
      }
    }
    this.observe(d, before, result.tx);
    d.published = result.tx;
    for (const w of d.waiters) if (w.until(result.tx)) w.resolve();
    if (finished && !result.effects.some((e) => e.type === 'persist' && !e.forced)) this.forget(d);
  }

  private send(d: Driver, effect: Effect & { type: 'send' }): void {
    const txId = d.tx.id;
    const p = d.tx.participants.find((q) => q.name === effect.participant);
    assert(p !== undefined, 'messages go to participants of the transaction');
    const target = { name: p.name, url: p.url };
    if (effect.message === 'prepare') {
      d.phaseOneStartedMs ??= this.timers.now();
      this.callsOutstanding++;
      this.o.participants
        .prepare(txId, target, p.payloadJson)
        .then((answer) => {
          this.callAnswered();
          const event: Event =
            answer.kind === 'vote'
              ? {
                  type: 'vote',
                  participant: p.name,
                  vote: answer.vote,
                  ...(answer.reason ? { reason: answer.reason } : {}),
                }
              : { type: 'vote-lost', participant: p.name, reason: answer.reason };
          return this.dispatch(d, event);
        })
        .catch((e) => this.fail(e, `vote of ${p.name} in ${txId}`));
      return;
    }
    const message = effect.message;
    assert(message !== 'commit' || d.commitDurable, 'no commit message leaves before the commit decision is on disk');
    const deliver = () => {
      if (this.stopped) return;
      this.callsOutstanding++;
      this.o.participants
        .deliver(message, txId, target)
        .then((answer) => {
          this.callAnswered();
          if (answer.kind === 'acknowledged') return this.dispatch(d, { type: 'acknowledged', participant: p.name });
          if (answer.kind === 'heuristic') {
            this.o.metrics.heuristics.inc({ heuristic: answer.heuristic });
            this.o.onHeuristic?.(
              `participant ${p.name} reports heuristic ${answer.heuristic} for ${txId}, decided ${message}`,
            );
            return this.dispatch(d, { type: 'heuristic', participant: p.name, heuristic: answer.heuristic });
          }
          return this.dispatch(d, { type: 'delivery-failed', participant: p.name, error: answer.error });
        })
        .catch((e) => this.fail(e, `${message} to ${p.name} in ${txId}`));
    };
    if (effect.attempt === 0) {
      deliver();
      return;
    }
    const timer = this.timers.after(retryDelayMs(effect.attempt, this.o, this.random), () => {
      d.retryTimers.delete(timer);
      deliver();
    });
    d.retryTimers.add(timer);
  }

  private waitFor(d: Driver, until: (tx: Transaction) => boolean): Promise<void> {
    if (d.published && until(d.published)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const settle = () => {
        this.timers.cancel(timer);
        d.waiters.delete(waiter);
      };
      const waiter: Waiter = {
        until,
        resolve: () => {
          settle();
          resolve();
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      };
      // Participant calls are bounded from when they are asked for, so this
      // passes only when something is slower than it may be (a log that does
      // not write): the caller then hears what readers see, and the API
      // promises nothing beyond it (protocol/answers.ts).
      const timer = this.timers.after(this.o.answerWaitMsMax, waiter.resolve);
      d.waiters.add(waiter);
    });
  }

  private observe(d: Driver, before: Transaction, after: Transaction): void {
    const m = this.o.metrics;
    if (before.outcome === null && after.outcome !== null) {
      m.transactionsDecided.inc({ outcome: after.outcome, reason: after.abortReason ?? '' });
      if (d.phaseOneStartedMs !== null)
        m.phaseDuration.observe({ phase: 'prepare' }, (this.timers.now() - d.phaseOneStartedMs) / 1000);
    }
    if (before.finishedAtMs === null && after.finishedAtMs !== null && after.outcome !== null) {
      m.transactionsFinished.inc({ outcome: after.outcome });
      if (after.decidedAtMs !== null) {
        m.phaseDuration.observe({ phase: after.outcome }, (after.finishedAtMs - after.decidedAtMs) / 1000);
      }
    }
  }

  private collectInFlight(): void {
    const counts = new Map<TxState, number>(ACTIVE_STATES.map((s) => [s, 0]));
    for (const d of this.live.values()) counts.set(d.tx.state, (counts.get(d.tx.state) ?? 0) + 1);
    for (const [state, n] of counts) this.o.metrics.inFlight.set({ state }, n);
  }

  private scheduleSweep(): void {
    this.sweepTimer = this.timers.after(this.o.sweepIntervalMs, () => {
      if (this.stopped) return;
      this.sweep();
      this.scheduleSweep();
    });
  }

  private violated(error: InvariantError): void {
    if (this.o.onInvariantViolation) this.o.onInvariantViolation(error);
    else crash(error);
  }

  private fail(error: unknown, context: string): void {
    if (error instanceof InvariantError) this.violated(error);
    this.o.onError?.(error as Error, context);
  }
}

/**
 * An invariant failed: a bug in commitd. Stop the process loudly rather than
 * act on a state that breaks atomicity; the log makes the crash safe.
 */
function crash(error: InvariantError): never {
  process.nextTick(() => {
    throw error;
  });
  throw error;
}
