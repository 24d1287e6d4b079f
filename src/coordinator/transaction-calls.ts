// The calls a client or an operator makes on transactions: begin (with its
// idempotency key and the admission limits), enlist, prepare, commit, abort,
// retry now and resolve a heuristic. A call on a live transaction is its next
// event (live-transaction.ts), answered once the protocol says it may be
// (protocol/answers.ts); a call on a finished one is answered from the
// stored state; one on another instance's goes there (ElsewhereError).

import { KeyedLock } from '../kit/keyed-lock.js';
import { type DecisionLog, IdempotencyKeyTakenError } from '../log/decision-log.js';
import {
  abortCallMayAnswer,
  answerStandsAfterHandover,
  commitCallMayAnswer,
  prepareCallMayAnswer,
} from '../protocol/answers.js';
import { assert } from '../protocol/assert.js';
import { createTransaction, type step } from '../protocol/transitions.js';
import type { Event, NewParticipant, Transaction } from '../protocol/types.js';
import type { Timers } from '../timers.js';
import { startBegin } from '../tracing/transaction-trace.js';
import type { Admission } from './admission.js';
import type { Answer, BeginRequest, CallContext, CoordinatorOptions, Placement } from './contract.js';
import {
  ConflictError,
  ElsewhereError,
  LimitError,
  logUnwritable,
  noTransaction,
  readingLog,
  UnavailableError,
} from './errors.js';
import { type IdempotencyIndex, scopedKey } from './idempotency-keys.js';
import { IdGenerator } from './ids.js';
import type { LiveTransaction } from './live-transaction.js';
import type { CoordinatorObserver } from './observer.js';
import type { TransactionReads } from './transaction-reads.js';

/** A call nobody in particular made (a one-shot's own commit, tests). */
export const NO_CALLER: CallContext = { by: null, operator: false };

export interface TransactionCallsOptions {
  readonly live: ReadonlyMap<string, LiveTransaction>;
  readonly keys: IdempotencyIndex;
  readonly admission: Admission;
  readonly reads: TransactionReads;
  readonly placement: Placement;
  /** Several instances share the store (ids name a shard). */
  readonly sharded: boolean;
  readonly timers: Timers;
  readonly step: typeof step;
  readonly observer: CoordinatorObserver;
  readonly log: DecisionLog;
  readonly settings: Pick<CoordinatorOptions, 'defaultTimeoutMs' | 'participantsMax' | 'entropy' | 'answerWaitMsMax'>;
  /** False before recovery and once stopping: begins are refused. */
  readonly accepting: () => boolean;
  /** A new transaction into memory, and out again when its begin did not reach the disk. */
  readonly track: (tx: Transaction, callerId: string) => LiveTransaction;
  readonly forget: (live: LiveTransaction) => void;
}

/** A new transaction whose begin is on disk, and its begin's span. */
interface Created {
  readonly live: LiveTransaction;
  readonly origin: ReturnType<typeof startBegin>;
}

export class TransactionCalls {
  private readonly ids: IdGenerator;
  /** Begins with one (scoped) idempotency key, one at a time. */
  private readonly sameKey = new KeyedLock();

  constructor(private readonly o: TransactionCallsOptions) {
    this.ids = new IdGenerator(o.settings.entropy);
  }

  async begin(request: BeginRequest): Promise<Answer> {
    if (!this.o.accepting()) throw new UnavailableError('commitd is not accepting new transactions', 1);
    const { idempotencyKey: key, idempotencyScope: scope } = request;
    // One begin per key at a time here, until its begin is on disk (or
    // failed): a second one with the key then finds the first.
    const begun =
      key === null
        ? await this.create(request, null)
        : await this.sameKey.run(scopedKey(scope, key), async () => {
            const existing = await this.o.keys.find(scope, key);
            if (existing) return { existing };
            try {
              return await this.create(request, scopedKey(scope, key));
            } catch (error) {
              if (!(error instanceof IdempotencyKeyTakenError)) throw error;
              // Begun with the same key at the same moment at another
              // instance, which the store took first: that one stands.
              const winner = await this.o.keys.find(scope, key);
              if (!winner) throw new UnavailableError('the idempotency key is being taken; retry', 1);
              return { existing: winner };
            }
          });
    if ('existing' in begun) return this.answerExisting(begun.existing, request);
    const { live, origin } = begun;
    this.o.observer.begun();
    const answer: Answer = request.commit
      ? await origin.around(this.dispatchAndWait(live, { type: 'commit', withBegin: true }, commitCallMayAnswer))
      : { tx: live.published as Transaction, refusal: null, created: true };
    if (!request.commit) origin.end(answer.tx, null);
    return answer;
  }

  /** A begin whose key names a transaction already: answered by that one (a retry), never a second one. */
  private answerExisting(existing: Transaction, request: BeginRequest): Promise<Answer> | Answer {
    if (existing.requestHash !== request.requestHash) {
      throw new ConflictError('this idempotency key was used for a different request');
    }
    // Finished, perhaps with only the key's snapshot left: answered from it.
    if (!this.o.live.has(existing.id) && existing.finishedAtMs !== null) {
      return this.answerStored(existing, request.commit ? { type: 'commit' } : null);
    }
    // Unfinished and driven by another instance: the whole begin goes there.
    if (!this.o.live.has(existing.id)) this.o.reads.elsewhere(existing.id);
    if (request.commit) return this.commit(existing.id);
    return { tx: existing, refusal: null, created: false };
  }

  /** A new transaction, its begin on disk. */
  private async create(request: BeginRequest, idempotencyKey: string | null): Promise<Created> {
    this.o.admission.admitBegin(request.callerId, request.participants, request.metadataJson);
    const shard = this.o.placement.shardForNew();
    // Owning no shard yet (a newcomer, before the others handed some over):
    // an instance that owns some begins it.
    if (this.o.sharded && shard === null) throw new ElsewhereError(null, this.o.placement.peerForNew());
    const nowMs = this.o.timers.now();
    // Before the transaction exists: begun without a traceparent while an
    // SDK traces, the transaction keeps this span's, so that what happens to
    // it later joins the trace its begin started.
    const origin = startBegin(request.traceParent ?? null);
    const created = createTransaction({
      id: this.ids.next(nowMs, shard),
      nowMs,
      timeoutMs: request.timeoutMs ?? this.o.settings.defaultTimeoutMs,
      oneShot: request.commit,
      participants: request.participants,
      idempotencyKey,
      requestHash: request.requestHash,
      metadataJson: request.metadataJson,
      traceParent: request.traceParent ?? origin.traceParent(),
      callerId: request.callerId,
      beganBy: request.beganBy ?? null,
    });
    const live = this.o.track(created.tx, request.callerId);
    live.trace.adopt(origin);
    try {
      await live.start(created, {
        type: 'begun',
        by: request.by,
        oneShot: request.commit,
        participants: request.participants.map((p) => p.name),
      });
    } catch (error) {
      this.o.forget(live);
      origin.failed(error);
      throw error;
    }
    return { live, origin };
  }

  async enlist(id: string, participant: NewParticipant, call: CallContext = NO_CALLER): Promise<Answer> {
    const live = this.o.live.get(id);
    if (!live?.published) {
      return this.answerStored(reachable(await this.o.reads.readHere(id), call), { type: 'enlist', participant });
    }
    reachable(live.published, call);
    const known = live.current.participants.some((p) => p.name === participant.name);
    if (!known && live.current.participants.length >= this.o.settings.participantsMax) {
      throw new LimitError(`a transaction has at most ${this.o.settings.participantsMax} participants`);
    }
    if (!known) this.o.admission.admitEnlist(live.callerId, participant);
    const result = await live.trace
      .origin('enlist', call.traceParent ?? null)
      .around(live.dispatch({ type: 'enlist', participant }))
      .catch((error) => this.towardOwner(id, error));
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
    if (call.operator && answer.refusal === null) this.o.observer.operatorAction('abort');
    return answer;
  }

  /**
   * An operator's "retry now": phase two resent at once to every participant
   * waiting out its backoff. Refused while the transaction is undecided.
   */
  async retry(id: string, call: CallContext): Promise<Answer> {
    const live = this.o.live.get(id);
    if (!live?.published) return this.answerStored(await this.o.reads.readHere(id), { type: 'retry' });
    const result = await live.trace
      .origin('retry', call.traceParent ?? null)
      .around(live.dispatch({ type: 'retry' }))
      .catch((error) => this.towardOwner(id, error));
    if (result.refusal === null) {
      live.record([{ type: 'operator-retry', by: call.by }]);
      this.o.observer.operatorAction('retry');
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
    // Another instance's transaction is resolved there: its history entry
    // is written under that instance's ownership (one written here would be
    // fenced off), and it answers for what it holds.
    if (this.o.live.has(id)) await this.o.reads.read(id);
    else await this.o.reads.readHere(id);
    // An instance that slept through a takeover still believes the shard is
    // its own: the store says whose it is.
    if (this.o.sharded && !(await readingLog(() => this.o.placement.confirmOwnership(id)))) this.o.reads.elsewhere(id);
    const log = this.o.log;
    try {
      // The heuristic may still be queued with a lazy snapshot.
      await log.flush();
    } catch (error) {
      throw logUnwritable(error);
    }
    const atMs = this.o.timers.now();
    const resolved = await log.resolveHeuristics(id, participant, { atMs, note, by: call.by });
    if (resolved.length === 0) return resolved;
    log.appendHistory(
      id,
      resolved.map((name) => ({ type: 'heuristic-resolved', participant: name, note, by: call.by, atMs })),
    );
    // On disk before the operator hears: the entry would otherwise wait for
    // the next write, and be lost with this instance if it went first. A
    // failure that may pass leaves it queued for the next batch; the
    // resolution itself is written already, so the answer stands.
    await log.flush().catch(() => {});
    this.o.observer.operatorAction('resolve');
    this.o.observer.unresolvedHeuristics(await log.unresolvedHeuristics());
    return resolved;
  }

  private async callAndWait(
    id: string,
    event: Event & { type: 'prepare' | 'commit' | 'abort' },
    until: (tx: Transaction) => boolean,
    call: CallContext,
  ): Promise<Answer> {
    const live = this.o.live.get(id);
    if (!live?.published) return this.answerStored(reachable(await this.o.reads.readHere(id), call), event);
    reachable(live.published, call);
    if (call !== NO_CALLER) live.record([{ type: 'requested', action: event.type, by: call.by }]);
    return live.trace
      .origin(event.type, call.traceParent ?? null)
      .around(this.dispatchAndWait(live, event, until))
      .catch((error) => this.towardOwner(id, error));
  }

  /** A call handed on while it waited goes to the new owner, once it is known (else 503, retry). */
  private towardOwner(id: string, error: unknown): never {
    if (error instanceof ElsewhereError && error.url === null) {
      const where = this.o.placement.whereIs(id);
      if (where.at === 'peer') throw new ElsewhereError(id, where.url);
    }
    throw error;
  }

  /**
   * The call's event, answered once `until` holds for what readers see. The
   * whole call is bounded, its dispatch included: a step that waits on a
   * slow store (its own forced write, or one queued ahead of it) would
   * otherwise hold the caller as long as the store takes. Participant calls
   * are bounded from when they are asked for, so the bound passes only when
   * something is slower than it may be; the caller then hears what readers
   * see (protocol/answers.ts: undecided is a 503, retry), and the step goes on.
   */
  private async dispatchAndWait(
    live: LiveTransaction,
    event: Event,
    until: (tx: Transaction) => boolean,
  ): Promise<Answer> {
    const bound = new AbortController();
    const timer = this.o.timers.after(this.o.settings.answerWaitMsMax, () => bound.abort());
    try {
      const answer = await withinBound(this.answerWhenAllowed(live, event, until, bound.signal), bound.signal);
      return answer ?? { tx: live.published as Transaction, refusal: null, created: false };
    } finally {
      this.o.timers.cancel(timer);
    }
  }

  private async answerWhenAllowed(
    live: LiveTransaction,
    event: Event,
    until: (tx: Transaction) => boolean,
    bound: AbortSignal,
  ): Promise<Answer> {
    try {
      const result = await live.dispatch(event);
      if (result.refusal) return { tx: live.published as Transaction, refusal: result.refusal, created: false };
      await live.waitFor(until, bound);
    } catch (error) {
      if (!(error instanceof ElsewhereError)) throw error;
      // Handed on to another instance meanwhile. A step in flight then (a
      // commit decision being written when the shard was handed over, which
      // writes what is queued first) may still publish a decision; one that
      // readers see stands wherever the transaction is driven now, and the
      // caller hears it, as it would at the answer bound (a one-shot's caller
      // would otherwise be told to retry a transaction that commits).
      // Undecided, the call goes on. (The wait is the caller's bound's.)
      await live.settled();
      if (!live.published || !answerStandsAfterHandover(live.published)) throw error;
    }
    return { tx: live.published as Transaction, refusal: null, created: false };
  }

  /** A transaction not in memory is finished: the protocol answers from the stored state, which nothing changes any more. */
  private answerStored(stored: Transaction, event: Event | null): Answer {
    if (event === null) return { tx: stored, refusal: null, created: false };
    const result = this.o.step(stored, event, this.o.timers.now());
    assert(result.effects.length === 0, 'a finished transaction takes no more effects');
    return { tx: stored, refusal: result.refusal, created: false };
  }
}

/**
 * The transaction, when the call may act on it; else the answer an unknown
 * id gets. Read from what is in memory (or was read anyway): no store read.
 */
export function reachable(tx: Transaction, call: CallContext): Transaction {
  if (call.onlyBegunBy != null && tx.beganBy !== call.onlyBegunBy) throw noTransaction(tx.id);
  return tx;
}

/** `work`'s result, or undefined once `bound` is aborted (work's own failure is then nobody's to hear). */
function withinBound<T>(work: Promise<T>, bound: AbortSignal): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const passed = () => {
      work.catch(() => {});
      resolve(undefined);
    };
    if (bound.aborted) return passed();
    bound.addEventListener('abort', passed, { once: true });
    work.then(
      (value) => {
        bound.removeEventListener('abort', passed);
        resolve(value);
      },
      (error) => {
        bound.removeEventListener('abort', passed);
        reject(error);
      },
    );
  });
}
