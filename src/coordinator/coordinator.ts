// The coordinator: the public API over the transactions in memory. Each live
// transaction drives itself (live-transaction.ts) through the pure protocol;
// this file begins them, passes callers' calls to them, answers for the
// finished ones from the log, recovers the unfinished ones (paced by
// recovery-pacer.ts) and lets go of those another instance takes. What new
// work must fit in is admission.ts; what readers see, transaction-reads.ts;
// the periodic deadlines and compaction, sweeper.ts.

import { InvariantError } from '../protocol/assert.js';
import { shardOfId } from '../protocol/transaction-ids.js';
import { step } from '../protocol/transitions.js';
import type { NewParticipant } from '../protocol/types.js';
import { realTimers, type Timers } from '../timers.js';
import { Admission } from './admission.js';
import type {
  Answer,
  BeginRequest,
  CallContext,
  CoordinatorOptions,
  ListFilter,
  Placement,
  Stats,
  Whereabouts,
} from './contract.js';
import { crashOnBug, ElsewhereError, readingLog } from './errors.js';
import { IdempotencyIndex } from './idempotency-keys.js';
import { LiveTransaction, type TransactionContext } from './live-transaction.js';
import { type AboutTransaction, type CoordinatorObserver, silentObserver } from './observer.js';
import { RecoveryPacer } from './recovery-pacer.js';
import { Sweeper } from './sweeper.js';
import { NO_CALLER, TransactionCalls } from './transaction-calls.js';
import { TransactionReads } from './transaction-reads.js';

export type { Answer, BeginRequest, CallContext, CoordinatorOptions, ListFilter, Placement, Stats, Whereabouts };

/** One instance: every transaction is its own, and ids name no shard. */
const ALONE: Placement = {
  shardForNew: () => null,
  peerForNew: () => null,
  whereIs: () => ({ at: 'here' }),
  confirmOwnership: async () => true,
};

export class Coordinator {
  private readonly live = new Map<string, LiveTransaction>();
  private readonly keys: IdempotencyIndex;
  private readonly timers: Timers;
  private readonly step: typeof step;
  private readonly observer: CoordinatorObserver;
  private readonly context: TransactionContext;
  private readonly recoveryPacer: RecoveryPacer<LiveTransaction>;
  private readonly placement: Placement;
  private readonly sharded: boolean;
  private readonly admission: Admission;
  private readonly sweeper: Sweeper;
  /** What readers see: a transaction, the inquiry, its history, the list, the overview (transaction-reads.ts). */
  readonly reads: TransactionReads;
  private readonly calls: TransactionCalls;
  private started = false;
  private accepting = false;
  private stopped = false;

  constructor(private readonly options: CoordinatorOptions) {
    this.timers = options.timers ?? realTimers;
    this.step = options.protocolStep ?? step;
    this.observer = options.observer ?? silentObserver;
    this.placement = options.placement ?? ALONE;
    this.sharded = options.placement !== undefined;
    this.admission = new Admission(options, () => this.timers.monotonicMs());
    this.sweeper = new Sweeper({
      live: this.live,
      log: options.log,
      observer: this.observer,
      timers: this.timers,
      settings: options,
      fail: (error, context) => this.fail(error, context),
    });
    this.reads = new TransactionReads({
      live: this.live,
      log: options.log,
      placement: this.placement,
      sharded: this.sharded,
      stuckAfterAttempts: options.stuckAfterAttempts,
      decisionRate: this.admission.decisionRate,
      stuckParticipants: () => this.sweeper.stuckParticipants,
    });
    this.keys = new IdempotencyIndex(options.log, (id) => this.live.get(id));
    this.recoveryPacer = new RecoveryPacer(options.recoveryCallsMax, (live) =>
      live.trace
        .origin('recover', null)
        .around(live.dispatch({ type: 'recover' }))
        .catch((e) => this.fail(e, `recovering ${live.id}`, live.about)),
    );
    this.context = {
      ...options,
      timers: this.timers,
      random: options.random ?? Math.random,
      protocolStep: this.step,
      observer: this.observer,
      backoff: options,
      calls: this.recoveryPacer,
      stopped: () => this.stopped,
      changed: (live, before, after) => this.admission.account(live.callerId, before, after),
      forget: (live) => this.forget(live),
      fail: (error, context, about) => this.fail(error, context, about),
      violated: (error) => this.violated(error),
    };
    this.calls = new TransactionCalls({
      live: this.live,
      keys: this.keys,
      admission: this.admission,
      reads: this.reads,
      placement: this.placement,
      sharded: this.sharded,
      timers: this.timers,
      step: this.step,
      observer: this.observer,
      log: options.log,
      settings: options,
      accepting: () => this.accepting,
      track: (tx, callerId) => this.track(new LiveTransaction(this.context, tx, callerId)),
      forget: (live) => this.forget(live),
    });
  }

  /**
   * Loads every unfinished transaction from the log (with several instances:
   * those of `shards`, the ones this instance just took) and drives it on.
   * Returns once each is live (their recovery steps are paced): from then on
   * new work is safe to accept, and calls for them are served here.
   */
  async recover(shards?: readonly number[]): Promise<number> {
    const loaded = await this.options.log.loadUnfinished(shards);
    const recovered = loaded
      .filter((tx) => !this.live.has(tx.id))
      .map((tx) => this.track(LiveTransaction.recovered(this.context, tx)));
    this.recoveryPacer.enqueue(recovered);
    this.observer.recovered(recovered.length);
    if (!this.started) {
      this.started = true;
      this.accepting = true;
      this.sweeper.start();
    }
    return recovered.length;
  }

  /**
   * Lets go of the transactions of these shards at once: another instance
   * drives them now. Callers waiting on them hear where to go.
   */
  drop(shards: readonly number[]): number {
    const dropping = new Set(shards);
    let dropped = 0;
    for (const live of [...this.live.values()]) {
      if (!dropping.has(shardOfId(live.id) ?? -1)) continue;
      live.disown();
      this.forget(live);
      dropped++;
    }
    return dropped;
  }

  /**
   * The store did not take a record of a live transaction: its shard moved
   * (the owner drives it now), or its decision row holds the other outcome,
   * which stands: that one is adopted, read back and driven as recovery would.
   */
  async writeRefused(id: string, reason: 'fenced' | 'decided'): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    live.disown();
    this.forget(live);
    if (reason === 'fenced') return;
    const stored = await readingLog(() => this.options.log.get(id));
    if (!stored || stored.finishedAtMs !== null || this.live.has(id) || this.stopped) return;
    this.recoveryPacer.enqueue([this.track(LiveTransaction.recovered(this.context, stored))]);
  }

  /** Where calls for a transaction not live here go: answered here from the log, or elsewhere. */
  whereIs(id: string): Whereabouts {
    return this.placement.whereIs(id);
  }

  get inFlight(): number {
    return this.live.size;
  }

  begin(request: BeginRequest): Promise<Answer> {
    return this.calls.begin(request);
  }

  enlist(id: string, participant: NewParticipant, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.calls.enlist(id, participant, call);
  }

  /** Phase one only: answers once every vote is in (or the transaction aborted). */
  prepare(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.calls.prepare(id, call);
  }

  /** Prepare if needed, decide, drive phase two: answers once every participant acknowledged or was tried once. */
  commit(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.calls.commit(id, call);
  }

  /** A client's abort, or an operator's (recorded as the abort's reason). */
  abort(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.calls.abort(id, call);
  }

  /** An operator's "retry now": phase two resent at once; refused while undecided. */
  retry(id: string, call: CallContext): Promise<Answer> {
    return this.calls.retry(id, call);
  }

  /** An operator's word that a heuristic outcome was dealt with by hand; returns the participants resolved. */
  resolveHeuristics(id: string, participant: string | null, note: string, call: CallContext): Promise<string[]> {
    return this.calls.resolveHeuristics(id, participant, note, call);
  }

  /** New transactions are refused from now on; the ones in flight go on. */
  stopAccepting(): void {
    this.accepting = false;
  }

  /** Stop taking work, stop retrying, and write everything queued. Durable state stays as it is. */
  async stop(): Promise<void> {
    this.accepting = false;
    this.stopped = true;
    this.sweeper.stop();
    for (const live of this.live.values()) live.cancelRetries();
    await Promise.allSettled([...this.live.values()].map((live) => live.settled()));
    await this.options.log.flush();
  }

  /** Deadlines, stuck participants and compaction now (sweeper.ts), as the periodic sweep does. */
  sweep(): Promise<void> {
    return this.sweeper.sweep();
  }

  private track(live: LiveTransaction): LiveTransaction {
    this.live.set(live.id, live);
    this.admission.account(live.callerId, null, live.current);
    this.keys.add(live);
    return live;
  }

  private forget(live: LiveTransaction): void {
    if (this.live.get(live.id) !== live) return;
    this.live.delete(live.id);
    this.admission.account(live.callerId, live.current, null);
    this.keys.remove(live);
    live.release();
  }

  private violated(error: InvariantError): void {
    if (this.options.onInvariantViolation) this.options.onInvariantViolation(error);
    else crashOnBug(error);
  }

  private fail(error: unknown, context: string, about?: AboutTransaction): void {
    if (error instanceof InvariantError) this.violated(error);
    // Another instance drives it now (a refused write handed it on): expected
    // with several instances, not a failure. So is whatever a sweep still
    // running meets once stop() let go of the log.
    if (error instanceof ElsewhereError || this.stopped) return;
    this.options.onError?.(error as Error, context, about);
  }
}
