// One transaction in memory, driven by the pure protocol: its events are
// applied one at a time (a promise chain), and each step's effects are
// performed in the order the protocol emitted them, a forced write on disk
// before anything after it. Readers see `published`: the transaction as of
// its last completed step, never a decision still on its way to disk.

import { type DecisionLog, IdempotencyKeyTakenError, WriteRefusedError } from '../log/decision-log.js';
import type { ParticipantClient, ParticipantTarget } from '../participants/participant-client.js';
import { assert, InvariantError } from '../protocol/assert.js';
import {
  entryOutlivesCap,
  HISTORY_ENTRIES_MAX,
  type HistoryEntry,
  type HistoryFact,
  historyOfStep,
} from '../protocol/history.js';
import { eventAfterFailedForcedWrite, isPastDeadline, type step } from '../protocol/transitions.js';
import type { Effect, Event, Message, Step, Transaction } from '../protocol/types.js';
import type { TimerHandle, Timers } from '../timers.js';
import { TransactionTrace } from '../tracing/transaction-trace.js';
import { type BackoffOptions, retryDelayMs } from './backoff.js';
import { ElsewhereError, logUnwritable } from './errors.js';
import type { AboutTransaction, CoordinatorObserver } from './observer.js';

/** What every live transaction shares: the log, the participants, time, and the coordinator's hooks. */
export interface TransactionContext {
  readonly log: DecisionLog;
  readonly participants: ParticipantClient;
  readonly timers: Timers;
  readonly random: () => number;
  readonly protocolStep: typeof step;
  readonly observer: CoordinatorObserver;
  readonly backoff: BackoffOptions;
  /** Counts participant calls, so recovery can pace itself. */
  readonly calls: { callStarted(): void; callAnswered(): void };
  /** After stop, answers still arriving change nothing: what is on disk is what the next start recovers from. */
  readonly stopped: () => boolean;
  /** The transaction changed (after every effect of the step ran): for the coordinator's accounting. */
  readonly changed: (live: LiveTransaction, before: Transaction, after: Transaction) => void;
  /** The transaction is finished and written: it may leave memory. */
  readonly forget: (live: LiveTransaction) => void;
  /** A failure in the background; an InvariantError is a bug. */
  readonly fail: (error: unknown, context: string, about?: AboutTransaction) => void;
  readonly violated: (error: InvariantError) => void;
}

interface Waiter {
  readonly until: (tx: Transaction) => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export class LiveTransaction {
  /** The newest state; what the next event is applied to. */
  private working: Transaction;
  /** What readers see: durable as far as anyone was promised. Undefined until begin is on disk. */
  published: Transaction | undefined = undefined;
  /** Settles once the begin record is on disk (or failed). */
  begun: Promise<void> = Promise.resolve();
  private chain: Promise<unknown> = Promise.resolve();
  private readonly waiters = new Set<Waiter>();
  private readonly retryTimers = new Set<TimerHandle>();
  /** Set once the commit decision is on disk; no commit message leaves before. */
  private commitDurable = false;
  private phaseOneStartedMs: number | null = null;
  /** History entries recorded since this transaction came into memory (begin or recovery). */
  private historyEntries = 0;
  /** Its spans (tracing/transaction-trace.ts), in the trace kept with it. */
  readonly trace: TransactionTrace;
  /** Another instance drives it now (its shard moved): nothing here acts on it any more. */
  private disowned = false;

  constructor(
    private readonly context: TransactionContext,
    tx: Transaction,
    /** Who began it (a token's id, or a client address), for the per-caller limit; '' when not known (recovered). */
    readonly callerId = '',
  ) {
    this.working = tx;
    this.trace = new TransactionTrace(tx.id, tx.traceParent);
  }

  /** A transaction read back from the log: what is on disk is what was promised. */
  static recovered(context: TransactionContext, tx: Transaction): LiveTransaction {
    // Its caller as the log kept it: the per-caller limits count it again.
    const live = new LiveTransaction(context, tx, tx.callerId ?? '');
    live.published = tx;
    live.commitDurable = tx.outcome === 'commit';
    return live;
  }

  get id(): string {
    return this.working.id;
  }

  /** What a log line about it carries. */
  get about(): AboutTransaction {
    return { txId: this.id, traceId: this.trace.traceId };
  }

  /** The newest state, durable or not: for the coordinator's own bookkeeping, never for readers. */
  get current(): Transaction {
    return this.working;
  }

  /** Performs the step that created this transaction (its begin); readers see it once that is on disk. */
  start(created: Step, begun: HistoryFact): Promise<void> {
    this.begun = this.perform(created, [begun]);
    this.chain = this.begun.catch(() => {});
    return this.begun;
  }

  /**
   * Applies `event` after every event before it, and performs what it leads
   * to. `latencyMs`: how long the participant took, when the event is its answer.
   */
  dispatch(event: Event, latencyMs?: number): Promise<Step> {
    const run = this.chain.then(async () => {
      // Handed on while this event waited its turn: the caller goes to the
      // owner (a step taken here would be refused by the store anyway).
      if (this.disowned) throw new ElsewhereError(this.id, null);
      if (this.context.stopped()) return { tx: this.working, effects: [], refusal: null, changed: false };
      const before = this.working;
      const result = this.context.protocolStep(before, event, this.context.timers.now());
      // The retry's sends replace the ones waiting out their backoff.
      if (event.type === 'retry' && result.changed) this.cancelRetries();
      await this.perform(result, historyOfStep(before, event, result, latencyMs));
      return result;
    });
    this.chain = run.catch(() => {});
    return run.catch((error) => {
      if (error instanceof InvariantError) this.context.violated(error);
      throw error;
    });
  }

  /**
   * Resolves once `until` holds for what readers see, or when `bound` is
   * aborted (the caller's answer bound passed: it then hears what is).
   */
  waitFor(until: (tx: Transaction) => boolean, bound: AbortSignal): Promise<void> {
    if (this.published && until(this.published)) return Promise.resolve();
    // Nothing here changes it any more: waiting would last the whole bound.
    if (this.disowned) return Promise.reject(new ElsewhereError(this.id, null));
    if (bound.aborted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const settle = () => {
        bound.removeEventListener('abort', waiter.resolve);
        this.waiters.delete(waiter);
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
      bound.addEventListener('abort', waiter.resolve, { once: true });
      this.waiters.add(waiter);
    });
  }

  /** Leaving memory: no more retries, and every caller still waiting hears what is. */
  release(): void {
    this.cancelRetries();
    this.trace.close();
    for (const w of this.waiters) w.resolve();
  }

  /**
   * Another instance drives it from now on (its shard was handed over or
   * taken): no more steps, sends or retries here, and every caller still
   * waiting hears where to go.
   */
  disown(): void {
    this.disowned = true;
    this.cancelRetries();
    const elsewhere = new ElsewhereError(this.id, null);
    for (const w of this.waiters) w.reject(elsewhere);
  }

  /** Stop retrying; durable state stays as it is. */
  cancelRetries(): void {
    for (const t of this.retryTimers) this.context.timers.cancel(t);
    this.retryTimers.clear();
  }

  /**
   * The sweep's visit: aborts the transaction if its deadline passed with
   * nothing decided (once its begin is on disk), and returns how many of its
   * participants are stuck (failed phase two at least `stuckAfterAttempts` times).
   */
  sweep(nowMs: number, stuckAfterAttempts: number): number {
    const tx = this.working;
    if (this.published && isPastDeadline(tx, nowMs)) {
      this.trace
        .origin('deadline', null)
        .around(this.dispatch({ type: 'deadline' }))
        .catch((e) => this.context.fail(e, `deadline of ${tx.id}`, this.about));
    }
    return tx.participants.filter((p) => !p.acknowledged && p.attempts >= stuckAfterAttempts).length;
  }

  /** Settles once every event dispatched so far has been handled. */
  settled(): Promise<unknown> {
    return this.chain;
  }

  /**
   * Adds to the transaction's history (kept with it in the log, written with
   * the log's next flush: never a write of its own). Past the cap, only the
   * entries that must outlive it are kept, after one saying so.
   */
  record(facts: readonly HistoryFact[]): void {
    if (facts.length === 0 || this.context.stopped()) return;
    const atMs = this.context.timers.now();
    const entries: HistoryEntry[] = [];
    for (const fact of facts) {
      if (this.historyEntries < HISTORY_ENTRIES_MAX - 1 || entryOutlivesCap(fact)) {
        entries.push({ ...fact, atMs });
      } else if (this.historyEntries === HISTORY_ENTRIES_MAX - 1) {
        entries.push({ type: 'truncated', afterEntries: this.historyEntries, atMs });
      }
      this.historyEntries++;
    }
    this.context.log.appendHistory(this.id, entries);
  }

  /** Performs one step's effects in order; a forced write blocks everything after it. */
  private async perform(result: Step, history: readonly HistoryFact[]): Promise<void> {
    if (!result.changed) return;
    const before = this.working;
    this.working = result.tx;
    const finished = result.effects.some((e) => e.type === 'finished');
    this.trace.stepping(before, result);
    for (const effect of result.effects) {
      if (effect.type === 'persist') {
        if (effect.forced) {
          // Awaited here rather than in a method of its own: one promise less per forced write.
          try {
            await this.context.log.writeForced(result.tx);
          } catch (error) {
            this.forcedWriteFailed(before, result.tx, error);
          }
          if (result.tx.outcome === 'commit') this.commitDurable = true;
        } else {
          this.context.log.writeLazy(result.tx, finished ? () => this.context.forget(this) : undefined);
        }
      } else if (effect.type === 'send') {
        this.send(effect);
      }
    }
    this.trace.stepped();
    // After the forced write: a step that did not reach the disk did not happen.
    this.record(history);
    this.observe(before, result.tx);
    this.context.changed(this, before, result.tx);
    this.published = result.tx;
    for (const w of this.waiters) if (w.until(result.tx)) w.resolve();
    if (finished && !result.effects.some((e) => e.type === 'persist' && !e.forced)) this.context.forget(this);
  }

  /** A forced write failed: not on disk, so it did not happen, and nothing after it runs. Throws. */
  private forcedWriteFailed(before: Transaction, tx: Transaction, error: unknown): never {
    this.working = before;
    this.trace.writeFailed(error);
    if (error instanceof WriteRefusedError) {
      // Not this instance's to decide any more (fenced), or decided already
      // in the store: the coordinator hands it on (Coordinator.writeRefused).
      // Nothing follows here: no abort after the failed write, which the
      // owner alone may decide.
      const elsewhere = new ElsewhereError(tx.id, null);
      for (const w of this.waiters) w.reject(elsewhere);
      throw elsewhere;
    }
    if (error instanceof IdempotencyKeyTakenError) {
      // Its begin: nothing was written, nobody heard of it; the begin answers with the key's transaction.
      for (const w of this.waiters) w.reject(error);
      throw error;
    }
    const unavailable = logUnwritable(error);
    // A caller waiting on this transaction (a commit waiting for the
    // decision the last vote leads to) would otherwise wait for a step that
    // did not happen and then answer as if it had. It hears the 503 now.
    for (const w of this.waiters) w.reject(unavailable);
    const next = eventAfterFailedForcedWrite(before);
    if (next !== null) {
      this.dispatch(next).catch((e) => this.context.fail(e, `recovering ${tx.id} after a failed write`, this.about));
    }
    throw unavailable;
  }

  private send(effect: Effect & { type: 'send' }): void {
    const tx = this.working;
    const p = tx.participants.find((q) => q.name === effect.participant);
    assert(p !== undefined, 'messages go to participants of the transaction');
    const target: ParticipantTarget = { name: p.name, url: p.url, database: p.database, preparedId: p.preparedId };
    if (effect.message === 'prepare') {
      this.phaseOneStartedMs ??= this.context.timers.monotonicMs();
      this.trace.phaseOneStarted(tx);
      this.call('prepare', target, () => this.askToPrepare(target, p.payloadJson));
      return;
    }
    const message = effect.message;
    assert(
      message !== 'commit' || this.commitDurable,
      'no commit message leaves before the commit decision is on disk',
    );
    const deliver = () => {
      if (this.context.stopped() || this.disowned) return;
      this.call(message, target, () => this.deliver(message, target, effect.attempt));
    };
    if (effect.attempt === 0) {
      deliver();
      return;
    }
    const timer = this.context.timers.after(
      retryDelayMs(effect.attempt, this.context.backoff, this.context.random),
      () => {
        this.retryTimers.delete(timer);
        deliver();
      },
    );
    this.retryTimers.add(timer);
  }

  /** One participant call, counted while outstanding; its answer becomes the next event. */
  private call(message: Message, target: ParticipantTarget, ask: () => Promise<Event>): void {
    this.context.calls.callStarted();
    const askedAtMs = this.context.timers.monotonicMs();
    ask()
      .then((event) => {
        this.context.calls.callAnswered();
        return this.dispatch(event, this.context.timers.monotonicMs() - askedAtMs);
      })
      .catch((e) => this.context.fail(e, `${message} to ${target.name} in ${this.id}`, this.about));
  }

  // The answer's mapping to an event runs in the client's own promise
  // continuation: no async wrapper, one promise less per participant call.
  private askToPrepare(target: ParticipantTarget, payloadJson: string | null): Promise<Event> {
    return this.trace
      .prepareCall(target, (traceParent) =>
        this.context.participants.prepare(this.id, target, payloadJson, traceParent),
      )
      .then(
        (answer): Event =>
          answer.kind === 'lost'
            ? { type: 'vote-lost', participant: target.name, reason: answer.reason }
            : {
                type: 'vote',
                participant: target.name,
                vote: answer.vote,
                ...(answer.reason ? { reason: answer.reason } : {}),
                ...(answer.preparedId ? { preparedId: answer.preparedId } : {}),
              },
      );
  }

  private deliver(message: 'commit' | 'abort', target: ParticipantTarget, attempt: number): Promise<Event> {
    return this.trace
      .deliveryCall(message, target, attempt, (traceParent) =>
        this.context.participants.deliver(message, this.id, target, traceParent),
      )
      .then((answer): Event => {
        switch (answer.kind) {
          case 'acknowledged':
            return { type: 'acknowledged', participant: target.name };
          case 'heuristic':
            this.context.observer.heuristic({
              ...this.about,
              participant: target.name,
              heuristic: answer.heuristic,
              decided: message,
            });
            return { type: 'heuristic', participant: target.name, heuristic: answer.heuristic };
          case 'failed':
            return { type: 'delivery-failed', participant: target.name, error: answer.error };
        }
      });
  }

  private observe(before: Transaction, after: Transaction): void {
    const { observer, timers } = this.context;
    if (before.outcome === null && after.outcome !== null) {
      const phaseOneSeconds =
        this.phaseOneStartedMs === null ? null : (timers.monotonicMs() - this.phaseOneStartedMs) / 1000;
      observer.decided(after.outcome, after.abortReason, phaseOneSeconds);
    }
    if (before.finishedAtMs === null && after.finishedAtMs !== null && after.outcome !== null) {
      const phaseTwoSeconds = after.decidedAtMs === null ? null : (after.finishedAtMs - after.decidedAtMs) / 1000;
      observer.finished(after.outcome, phaseTwoSeconds);
    }
  }
}
