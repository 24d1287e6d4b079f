// The coordinator: the public API over the transactions in memory. Each live
// transaction drives itself (live-transaction.ts) through the pure protocol;
// this file begins them, finds them for callers, answers for the finished
// ones from the log, keeps deadlines and compaction on a sweep, and recovers
// the unfinished ones at start (paced by recovery-pacer.ts).

import type { HeuristicResolution, ListPage } from '../log/decision-log.js';
import {
  abortCallMayAnswer,
  answerStandsAfterHandover,
  commitCallMayAnswer,
  prepareCallMayAnswer,
} from '../protocol/answers.js';
import { assert, InvariantError } from '../protocol/assert.js';
import type { HistoryEntry } from '../protocol/history.js';
import { shardOfId } from '../protocol/transaction-ids.js';
import { createTransaction, step } from '../protocol/transitions.js';
import {
  type Event,
  type NewParticipant,
  type Outcome,
  type Transaction,
  type TxState,
  UNFINISHED_STATES,
} from '../protocol/types.js';
import { realTimers, type TimerHandle, type Timers } from '../timers.js';
import { startBegin } from '../tracing/transaction-trace.js';
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
import { DecisionRate } from './decision-rate.js';
import {
  ConflictError,
  crashOnBug,
  ElsewhereError,
  LimitError,
  logUnwritable,
  NotFoundError,
  readingLog,
  UnavailableError,
} from './errors.js';
import { IdempotencyIndex, scopedKey } from './idempotency-keys.js';
import { IdGenerator } from './ids.js';
import { LiveTransaction, type TransactionContext } from './live-transaction.js';
import { type AboutTransaction, type CoordinatorObserver, silentObserver } from './observer.js';
import { RecoveryPacer } from './recovery-pacer.js';

export type { Answer, BeginRequest, CallContext, CoordinatorOptions, ListFilter, Placement, Stats, Whereabouts };

/** One instance: every transaction is its own, and ids name no shard. */
const ALONE: Placement = {
  shardForNew: () => null,
  peerForNew: () => null,
  whereIs: () => ({ at: 'here' }),
  confirmOwnership: async () => true,
};

/** A call nobody in particular made (a one-shot's own commit, tests). */
const NO_CALLER: CallContext = { by: null, operator: false };

export class Coordinator {
  private readonly live = new Map<string, LiveTransaction>();
  private readonly keys: IdempotencyIndex;
  private readonly ids: IdGenerator;
  private readonly timers: Timers;
  private readonly step: typeof step;
  private readonly observer: CoordinatorObserver;
  private readonly context: TransactionContext;
  private readonly recoveryPacer: RecoveryPacer<LiveTransaction>;
  private readonly placement: Placement;
  private readonly sharded: boolean;
  /** Live transactions with no outcome yet: what the in-flight limit counts. */
  private undecided = 0;
  /** The same, per caller that has any (callers with none are not kept). */
  private readonly undecidedByCaller = new Map<string, number>();
  /** Payload and metadata characters held by live transactions (payloads are dropped at the decision). */
  private heldBytes = 0;
  private readonly decisionRate: DecisionRate;
  /** As of the last sweep. */
  private stuck = 0;
  private sweepTimer: TimerHandle | null = null;
  private compacting = false;
  private started = false;
  private accepting = false;
  private stopped = false;

  constructor(private readonly options: CoordinatorOptions) {
    this.timers = options.timers ?? realTimers;
    this.step = options.protocolStep ?? step;
    this.observer = options.observer ?? silentObserver;
    this.placement = options.placement ?? ALONE;
    this.sharded = options.placement !== undefined;
    this.ids = new IdGenerator(options.entropy);
    this.decisionRate = new DecisionRate(() => this.timers.monotonicMs());
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
      changed: (live, before, after) => this.account(live, before, after),
      forget: (live) => this.forget(live),
      fail: (error, context, about) => this.fail(error, context, about),
      violated: (error) => this.violated(error),
    };
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
      this.scheduleSweep();
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

  /** Transactions in memory by state, every unfinished state present. */
  inFlightByState(): Map<TxState, number> {
    const counts = new Map<TxState, number>(UNFINISHED_STATES.map((s) => [s, 0]));
    for (const live of this.live.values()) counts.set(live.current.state, (counts.get(live.current.state) ?? 0) + 1);
    return counts;
  }

  async begin(request: BeginRequest): Promise<Answer> {
    if (!this.accepting) throw new UnavailableError('commitd is not accepting new transactions', 1);
    const idempotencyKey =
      request.idempotencyKey === null ? null : scopedKey(request.idempotencyScope, request.idempotencyKey);
    if (idempotencyKey !== null) {
      const existing = await this.keys.find(idempotencyKey);
      if (existing) {
        if (existing.requestHash !== request.requestHash) {
          throw new ConflictError('this idempotency key was used for a different request');
        }
        // Finished, perhaps with only the key's snapshot left: answered from it.
        if (!this.live.has(existing.id) && existing.finishedAtMs !== null) {
          return this.answerStored(existing, request.commit ? { type: 'commit' } : null);
        }
        // Unfinished and driven by another instance: the whole begin goes there.
        if (!this.live.has(existing.id)) this.elsewhere(existing.id);
        if (request.commit) return this.commit(existing.id);
        return { tx: existing, refusal: null, created: false };
      }
    }
    // Transactions that only deliver phase two (a participant unreachable
    // for hours) keep being retried but hold no capacity new work needs.
    if (this.undecided >= this.options.inFlightMax) {
      throw new UnavailableError(
        `${this.options.inFlightMax} undecided transactions in flight, the configured limit`,
        1,
      );
    }
    const perCallerMax = this.options.inFlightPerCallerMax;
    if (
      perCallerMax > 0 &&
      request.callerId !== '' &&
      (this.undecidedByCaller.get(request.callerId) ?? 0) >= perCallerMax
    ) {
      throw new UnavailableError(`${perCallerMax} undecided transactions of this caller in flight, its limit`, 1);
    }
    this.reserveBytes(requestBytes(request.participants, request.metadataJson));
    const shard = this.placement.shardForNew();
    // Owning no shard yet (a newcomer, before the others handed some over):
    // an instance that owns some begins it.
    if (this.sharded && shard === null) throw new ElsewhereError(null, this.placement.peerForNew());
    const nowMs = this.timers.now();
    // Before the transaction exists: begun without a traceparent while an
    // SDK traces, the transaction keeps this span's, so that what happens to
    // it later joins the trace its begin started.
    const origin = startBegin(request.traceParent ?? null);
    const created = createTransaction({
      id: this.ids.next(nowMs, shard),
      nowMs,
      timeoutMs: request.timeoutMs ?? this.options.defaultTimeoutMs,
      oneShot: request.commit,
      participants: request.participants,
      idempotencyKey,
      requestHash: request.requestHash,
      metadataJson: request.metadataJson,
      traceParent: request.traceParent ?? origin.traceParent(),
    });
    const live = this.track(new LiveTransaction(this.context, created.tx, request.callerId));
    live.trace.adopt(origin);
    try {
      await live.start(created, {
        type: 'begun',
        by: request.by,
        oneShot: request.commit,
        participants: request.participants.map((p) => p.name),
      });
    } catch (error) {
      this.forget(live);
      origin.failed(error);
      throw error;
    }
    this.observer.begun();
    const answer: Answer = request.commit
      ? await origin.around(this.dispatchAndWait(live, { type: 'commit', withBegin: true }, commitCallMayAnswer))
      : { tx: live.published as Transaction, refusal: null, created: true };
    if (!request.commit) origin.end(answer.tx, null);
    return answer;
  }

  /** `traceParent` (here and in the calls below): the valid W3C traceparent the call came with, or null. */
  async enlist(id: string, participant: NewParticipant, traceParent: string | null = null): Promise<Answer> {
    const live = this.live.get(id);
    if (!live?.published) return this.answerStored(await this.readHere(id), { type: 'enlist', participant });
    const known = live.current.participants.some((p) => p.name === participant.name);
    if (!known && live.current.participants.length >= this.options.participantsMax) {
      throw new LimitError(`a transaction has at most ${this.options.participantsMax} participants`);
    }
    if (!known) this.reserveBytes(requestBytes([participant], null));
    const result = await live.trace
      .origin('enlist', traceParent)
      .around(live.dispatch({ type: 'enlist', participant }));
    return { tx: live.published, refusal: result.refusal, created: result.changed && result.refusal === null };
  }

  /** Phase one only: answers once every vote is in (or the transaction aborted). */
  prepare(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.callAndWait(id, { type: 'prepare' }, prepareCallMayAnswer, call);
  }

  /**
   * Prepare if needed, decide, and drive phase two: answers once every
   * participant acknowledged or was tried once (then the caller gets 202 and
   * the coordinator keeps trying).
   */
  commit(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    return this.callAndWait(id, { type: 'commit' }, commitCallMayAnswer, call);
  }

  /** A client's abort, or an operator's (recorded as the abort's reason). */
  async abort(id: string, call: CallContext = NO_CALLER): Promise<Answer> {
    const answer = await this.callAndWait(id, { type: 'abort', byOperator: call.operator }, abortCallMayAnswer, call);
    if (call.operator && answer.refusal === null) this.observer.operatorAction('abort');
    return answer;
  }

  /**
   * An operator's "retry now": phase two resent at once to every participant
   * waiting out its backoff. Refused while the transaction is undecided.
   */
  async retry(id: string, call: CallContext): Promise<Answer> {
    const live = this.live.get(id);
    if (!live?.published) return this.answerStored(await this.readHere(id), { type: 'retry' });
    const result = await live.trace.origin('retry', call.traceParent ?? null).around(live.dispatch({ type: 'retry' }));
    if (result.refusal === null) {
      live.record([{ type: 'operator-retry', by: call.by }]);
      this.observer.operatorAction('retry');
    }
    return { tx: live.published, refusal: result.refusal, created: false };
  }

  /**
   * An operator's word that a heuristic outcome (of `participant`, or of
   * every participant) was dealt with by hand: it stops counting as
   * unresolved, and the transaction may be compacted again. Returns the
   * participants resolved; none means there was nothing to resolve.
   */
  async resolveHeuristics(id: string, participant: string | null, note: string, call: CallContext): Promise<string[]> {
    await this.read(id);
    const log = this.options.log;
    try {
      // The heuristic may still be queued with a lazy snapshot.
      await log.flush();
    } catch (error) {
      throw logUnwritable(error);
    }
    const atMs = this.timers.now();
    const resolved = await log.resolveHeuristics(id, participant, { atMs, note, by: call.by });
    if (resolved.length === 0) return resolved;
    log.appendHistory(
      id,
      resolved.map((name) => ({ type: 'heuristic-resolved', participant: name, note, by: call.by, atMs })),
    );
    this.observer.operatorAction('resolve');
    this.observer.unresolvedHeuristics(await log.unresolvedHeuristics());
    return resolved;
  }

  /** The transaction's history, oldest first; throws NotFoundError for a transaction readers cannot see. */
  async history(id: string): Promise<HistoryEntry[]> {
    await this.read(id);
    return readingLog(() => this.options.log.history(id));
  }

  /** The heuristic outcomes of the transaction an operator resolved. */
  resolutions(id: string): Promise<HeuristicResolution[]> {
    return readingLog(() => this.options.log.resolutions(id));
  }

  async stats(): Promise<Stats> {
    let oldest: Transaction | null = null;
    for (const live of this.live.values()) {
      const tx = live.published;
      if (tx && (oldest === null || tx.createdAtMs < oldest.createdAtMs)) oldest = tx;
    }
    return {
      inFlight: this.inFlightByState(),
      decidedPerSecond: this.decisionRate.perSecond(),
      stuckParticipants: this.stuck,
      unresolvedHeuristics: await readingLog(() => this.options.log.unresolvedHeuristics()),
      oldestUnfinished: oldest,
      stuckAfterAttempts: this.options.stuckAfterAttempts,
    };
  }

  async get(id: string): Promise<Transaction> {
    const tx = await this.read(id);
    // Unfinished and driven by another instance: its memory is ahead of the
    // store (votes, and the end, are written lazily), so the read goes there:
    // a caller that just heard "committed" from it reads committed here too.
    if (this.sharded && tx.finishedAtMs === null && !this.live.has(id)) {
      const where = this.whereIs(id);
      if (where.at === 'peer') throw new ElsewhereError(id, where.url);
    }
    return tx;
  }

  /**
   * The participant inquiry. Only a durable decision is ever reported; an id
   * the log does not know was never decided commit (its record would be kept
   * until every participant acknowledged), so it is presumed aborted.
   */
  async outcome(id: string): Promise<Outcome | 'pending'> {
    const live = this.live.get(id);
    if (live) return live.published?.outcome ?? 'pending';
    const stored = await readingLog(() => this.options.log.get(id));
    if (stored?.outcome) return stored.outcome;
    // Undecided or unknown: only the owner may say. Another instance may
    // hold it in memory with prepares out and its begin not yet written.
    if (this.whereIs(id).at !== 'here') this.elsewhere(id);
    // Here, stored and not live: still being loaded after a takeover.
    if (stored) return 'pending';
    // Unknown: never decided commit (presumed abort). With several
    // instances, only if this one owns the shard now, by the store's word:
    // then it was begun here (and would be live or stored) or under an
    // earlier owner, whose writes no longer count. Begins are forced before
    // any prepare leaves, so a prepared participant's transaction is in the
    // store anyway; this keeps a presumed abort from resting on the belief
    // of an instance that slept through a takeover, whatever changes later.
    const owned = await readingLog(() => this.placement.confirmOwnership(id));
    // Loaded meanwhile (a takeover's recovery): it says for itself.
    const loaded = this.live.get(id);
    if (loaded) return loaded.published?.outcome ?? 'pending';
    if (!owned) this.elsewhere(id);
    return 'abort';
  }

  async list(query: ListFilter): Promise<ListPage> {
    if (query.stuck) return this.listStuck(query);
    try {
      await this.options.log.flush();
    } catch (error) {
      // The page is read from the log, so what is queued for it goes first
      // (a state filter would miss it otherwise). With a full disk it cannot
      // go: that is the 503 of a log that cannot be written, not a 500.
      throw logUnwritable(error);
    }
    const page = await readingLog(() => this.options.log.list(query));
    const transactions: Transaction[] = [];
    for (const stored of page.transactions) {
      // A live transaction may have moved on since its last write (votes are
      // not written one by one), or not be durable yet (its begin is still
      // waiting for its fsync): show what readers see elsewhere.
      const live = this.live.get(stored.id);
      const tx = live ? live.published : stored;
      if (tx && (query.state === null || tx.state === query.state)) transactions.push(tx);
    }
    return { transactions, next: page.next };
  }

  /**
   * Transactions with a participant stuck now: attempts are counted in memory
   * only (they start over at a restart), so this page is read from the live
   * transactions, every unfinished one being live.
   */
  private async listStuck(query: ListFilter): Promise<ListPage> {
    const stuckAfter = this.options.stuckAfterAttempts;
    const matches: Transaction[] = [];
    for (const live of this.live.values()) {
      const tx = live.published;
      if (!tx || (query.after != null && tx.id >= query.after)) continue;
      if (!tx.participants.some((p) => !p.acknowledged && p.attempts >= stuckAfter)) continue;
      if (query.state != null && tx.state !== query.state) continue;
      if (query.createdBeforeMs != null && tx.createdAtMs >= query.createdBeforeMs) continue;
      if (query.participant != null && !tx.participants.some((p) => p.name === query.participant)) continue;
      if (query.heuristicUnresolved && !(await this.hasUnresolvedHeuristic(tx))) continue;
      matches.push(tx);
    }
    matches.sort((a, b) => (a.id < b.id ? 1 : -1));
    const page = matches.slice(0, query.limit);
    return { transactions: page, next: matches.length > query.limit ? (page.at(-1)?.id ?? null) : null };
  }

  private async hasUnresolvedHeuristic(tx: Transaction): Promise<boolean> {
    const resolved = new Set((await this.options.log.resolutions(tx.id)).map((r) => r.participant));
    return tx.participants.some((p) => p.heuristic !== null && p.heuristic !== tx.outcome && !resolved.has(p.name));
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
    for (const live of this.live.values()) live.cancelRetries();
    await Promise.allSettled([...this.live.values()].map((live) => live.settled()));
    await this.options.log.flush();
  }

  /**
   * Aborts undecided transactions past their deadline and forgets finished
   * ones past retention. Resolves once the compaction is done; one runs at a
   * time (a sweep that comes while one runs leaves compaction to the next).
   */
  async sweep(): Promise<void> {
    const nowMs = this.timers.now();
    let stuck = 0;
    let oldestCreatedAtMs = nowMs;
    for (const live of this.live.values()) {
      stuck += live.sweep(nowMs, this.options.stuckAfterAttempts);
      if (live.published) oldestCreatedAtMs = Math.min(oldestCreatedAtMs, live.published.createdAtMs);
    }
    this.stuck = stuck;
    this.observer.stuckParticipants(stuck);
    this.observer.oldestUnfinishedAgeSeconds(Math.max(0, nowMs - oldestCreatedAtMs) / 1000);
    if (this.compacting) return;
    this.compacting = true;
    try {
      this.observer.unresolvedHeuristics(await this.options.log.unresolvedHeuristics());
    } catch (error) {
      this.fail(error, 'counting unresolved heuristics');
    }
    try {
      const forgotten = await this.options.log.compact(
        nowMs - this.options.retentionMs,
        nowMs - this.options.idempotencyKeyRetentionMs,
        this.options.compactionBatchMax,
      );
      this.observer.compacted(forgotten);
    } catch (error) {
      this.fail(error, 'compacting the log');
    } finally {
      this.compacting = false;
    }
  }

  private async callAndWait(
    id: string,
    event: Event & { type: 'prepare' | 'commit' | 'abort' },
    until: (tx: Transaction) => boolean,
    call: CallContext,
  ): Promise<Answer> {
    const live = this.live.get(id);
    if (!live?.published) return this.answerStored(await this.readHere(id), event);
    if (call !== NO_CALLER) live.record([{ type: 'requested', action: event.type, by: call.by }]);
    try {
      return await live.trace
        .origin(event.type, call.traceParent ?? null)
        .around(this.dispatchAndWait(live, event, until));
    } catch (error) {
      // Handed on while the call waited: to the new owner, once it is known.
      if (error instanceof ElsewhereError && error.url === null) {
        const where = this.whereIs(id);
        if (where.at === 'peer') throw new ElsewhereError(id, where.url);
      }
      throw error;
    }
  }

  private async dispatchAndWait(
    live: LiveTransaction,
    event: Event,
    until: (tx: Transaction) => boolean,
  ): Promise<Answer> {
    try {
      const result = await live.dispatch(event);
      if (result.refusal) return { tx: live.published as Transaction, refusal: result.refusal, created: false };
      await live.waitFor(until);
    } catch (error) {
      // Handed on to another instance meanwhile. A decision readers saw here
      // stands wherever it is driven now: the caller hears it, as it would at
      // the answer bound (a one-shot's caller would otherwise be told to
      // retry a transaction that commits). Undecided, the call goes on.
      if (!(error instanceof ElsewhereError && live.published && answerStandsAfterHandover(live.published))) {
        throw error;
      }
    }
    return { tx: live.published as Transaction, refusal: null, created: false };
  }

  /** A transaction not in memory is finished: the protocol answers from the stored state, which nothing changes any more. */
  private answerStored(stored: Transaction, event: Event | null): Answer {
    if (event === null) return { tx: stored, refusal: null, created: false };
    const result = this.step(stored, event, this.timers.now());
    assert(result.effects.length === 0, 'a finished transaction takes no more effects');
    return { tx: stored, refusal: result.refusal, created: false };
  }

  /**
   * A transaction that is not live here, read to answer a call that may
   * change it: only if it is this instance's (then it is finished, or
   * unknown); another instance's call goes there.
   */
  private async readHere(id: string): Promise<Transaction> {
    if (!this.live.has(id) && this.whereIs(id).at !== 'here') this.elsewhere(id);
    const tx = await this.read(id);
    // Unfinished and not live: another instance drives it (this one slept
    // through a takeover and only believes the shard is still its own).
    if (tx.finishedAtMs === null && !this.live.has(id) && this.sharded) this.elsewhere(id);
    return tx;
  }

  private elsewhere(id: string): never {
    const where = this.whereIs(id);
    throw new ElsewhereError(id, where.at === 'peer' ? where.url : null);
  }

  private async read(id: string): Promise<Transaction> {
    // A live transaction with nothing published yet is one whose begin record
    // is written but not yet fsynced: nobody was told of it, and it may not
    // survive a power loss, so it does not exist for readers yet (the log
    // would already return it).
    const live = this.live.get(id);
    const tx = live ? live.published : await readingLog(() => this.options.log.get(id));
    if (!tx) throw new NotFoundError(`no transaction ${id}`);
    return tx;
  }

  /** Refuses (503) what would take the payload and metadata held in memory past its bound. */
  private reserveBytes(bytes: number): void {
    if (this.heldBytes + bytes > this.options.inFlightBytesMax) {
      throw new UnavailableError(
        `${this.options.inFlightBytesMax} bytes of payload and metadata in flight, the configured limit`,
        1,
      );
    }
  }

  private account(live: LiveTransaction, before: Transaction | null, after: Transaction | null): void {
    const undecidedDelta = (after?.outcome === null ? 1 : 0) - (before?.outcome === null ? 1 : 0);
    this.undecided += undecidedDelta;
    if (undecidedDelta !== 0 && live.callerId !== '') {
      const count = (this.undecidedByCaller.get(live.callerId) ?? 0) + undecidedDelta;
      if (count > 0) this.undecidedByCaller.set(live.callerId, count);
      else this.undecidedByCaller.delete(live.callerId);
    }
    this.heldBytes += heldBytes(after) - heldBytes(before);
    if (before !== null && before.outcome === null && after?.outcome != null) this.decisionRate.decided(after.outcome);
  }

  private track(live: LiveTransaction): LiveTransaction {
    this.live.set(live.id, live);
    this.account(live, null, live.current);
    this.keys.add(live);
    return live;
  }

  private forget(live: LiveTransaction): void {
    if (this.live.get(live.id) !== live) return;
    this.live.delete(live.id);
    this.account(live, live.current, null);
    this.keys.remove(live);
    live.release();
  }

  private scheduleSweep(): void {
    this.sweepTimer = this.timers.after(this.options.sweepIntervalMs, () => {
      if (this.stopped) return;
      void this.sweep();
      this.scheduleSweep();
    });
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

/** Payload and metadata a transaction holds in memory, as JSON characters (about bytes). */
function heldBytes(tx: Transaction | null): number {
  return tx === null ? 0 : requestBytes(tx.participants, tx.metadataJson);
}

function requestBytes(participants: readonly { payloadJson: string | null }[], metadataJson: string | null): number {
  let bytes = metadataJson?.length ?? 0;
  for (const p of participants) bytes += p.payloadJson?.length ?? 0;
  return bytes;
}
