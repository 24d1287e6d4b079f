// Two-phase commit, presumed abort, as pure functions: (transaction, event,
// now) -> (transaction, effects). No I/O, no clock, no randomness: the runtime
// performs the effects in order, and a forced persist is on disk before any
// effect after it happens.
//
// Durability (docs/design.md):
// - begin and enlist are forced: the coordinator must always know whom it may
//   have asked to prepare;
// - an explicit transaction's `preparing` is forced before its prepares leave:
//   after a crash, recovery must know they may be out, to abort it at once
//   instead of holding prepared participants until the deadline;
// - the commit decision is forced before any commit message leaves;
// - votes are forced only when an explicit /prepare answers `prepared`;
// - an abort decision is lazy only for a one-shot transaction, which recovery
//   aborts whatever it finds and whatever the clock says. Any other abort may
//   be heard (by a participant, a caller, a reader) before the next flush, and
//   a restart with the wall clock stepped back would bring the transaction
//   back undecided and commit-able: it is forced (abortIsForced);
// - acknowledgements and the end are lazy: losing one only repeats a message.

import { assert } from './assert.js';
import type {
  AbortReason,
  Effect,
  Event,
  Heuristic,
  Message,
  NewParticipant,
  NewTransaction,
  Participant,
  Refusal,
  Step,
  Transaction,
  Vote,
} from './types.js';

const FORCED: Effect = { type: 'persist', forced: true };
const LAZY: Effect = { type: 'persist', forced: false };
const FINISHED: Effect = { type: 'finished' };

export function newParticipant(p: NewParticipant): Participant {
  return {
    name: p.name,
    url: p.url,
    database: p.database,
    payloadJson: p.payloadJson,
    vote: null,
    voteLost: false,
    reason: null,
    preparedId: null,
    acknowledged: false,
    heuristic: null,
    attempts: 0,
    lastError: null,
  };
}

/** Begin: the record of whom we may ask to prepare is forced before anything else. */
export function createTransaction(input: NewTransaction): Step {
  const names = new Set(input.participants.map((p) => p.name));
  assert(names.size === input.participants.length, 'participant names are unique');
  assert(input.timeoutMs > 0, 'timeout is positive');
  const tx: Transaction = {
    id: input.id,
    state: 'active',
    outcome: null,
    abortReason: null,
    oneShot: input.oneShot,
    commitRequested: false,
    createdAtMs: input.nowMs,
    deadlineMs: input.nowMs + input.timeoutMs,
    decidedAtMs: null,
    finishedAtMs: null,
    idempotencyKey: input.idempotencyKey,
    requestHash: input.requestHash,
    metadataJson: input.metadataJson,
    traceParent: input.traceParent,
    ...(input.callerId ? { callerId: input.callerId } : {}),
    beganBy: input.beganBy ?? null,
    participants: input.participants.map(newParticipant),
  };
  return { tx, effects: [FORCED], refusal: null, changed: true };
}

/** An undecided transaction past its deadline can only be aborted: nothing else may happen to it first. */
export function isPastDeadline(tx: Transaction, nowMs: number): boolean {
  return tx.outcome === null && nowMs >= tx.deadlineMs;
}

/**
 * Apply one event. Any event but `recover` that finds an undecided
 * transaction past its deadline first aborts it: a deadline is durable, so an
 * expired transaction can never be committed, even after a restart.
 */
export function step(tx: Transaction, event: Event, nowMs: number): Step {
  const result = transition(tx, event, nowMs);
  // The rules below return the very transaction they were given when nothing
  // changes; callers are told so in words instead. Built as a literal, not a
  // spread: this runs for every event, and a spread copy cost the runtime
  // split of #8 a measurable share of its CPU.
  return {
    tx: result.tx,
    effects: result.effects,
    refusal: result.refusal,
    changed: result.tx !== tx || result.effects.length > 0,
  };
}

function transition(tx: Transaction, event: Event, nowMs: number): Result {
  if (event.type === 'recover') return recover(tx, nowMs);
  if (isPastDeadline(tx, nowMs)) {
    const expired = decideAbort(tx, 'deadline', nowMs, preparesOf(tx));
    if (event.type === 'deadline') return expired;
    const next = apply(expired.tx, event, nowMs);
    return { tx: next.tx, effects: [...expired.effects, ...next.effects], refusal: next.refusal };
  }
  return apply(tx, event, nowMs);
}

/**
 * A forced write failed: it did not happen, and nothing after it ran. When
 * that write was what every answered prepare led to (the commit decision, the
 * prepared record), the last vote went with it and only the deadline would
 * move the transaction on, with participants prepared meanwhile: it is
 * recovered now, as it would be after a crash at this instant (its
 * `preparing`, or a one-shot's begin, is what is on disk).
 */
export function eventAfterFailedForcedWrite(before: Transaction): Event | null {
  return before.state === 'preparing' ? { type: 'recover' } : null;
}

function apply(tx: Transaction, event: Event, nowMs: number): Result {
  switch (event.type) {
    case 'enlist':
      return enlist(tx, event.participant);
    case 'prepare':
      return prepare(tx, false, nowMs);
    case 'commit':
      return commit(tx, event.withBegin === true, nowMs);
    case 'abort':
      return requestedAbort(tx, event.byOperator === true ? 'operator' : 'client', nowMs);
    case 'retry':
      return retryNow(tx);
    case 'deadline':
      return unchanged(tx); // not yet expired, or already decided
    case 'vote':
      return vote(tx, event.participant, event.vote, false, event.reason ?? null, nowMs, event.preparedId ?? null);
    case 'vote-lost':
      return vote(tx, event.participant, 'no', true, event.reason, nowMs, null);
    case 'acknowledged':
      return acknowledged(tx, event.participant, null, nowMs);
    case 'heuristic':
      return acknowledged(tx, event.participant, event.heuristic, nowMs);
    case 'delivery-failed':
      return deliveryFailed(tx, event.participant, event.error);
    case 'recover':
      return recover(tx, nowMs);
  }
}

function enlist(tx: Transaction, p: NewParticipant): Result {
  if (tx.oneShot) return refuse(tx, 'not-active', 'a one-shot transaction takes no enlistment');
  if (tx.state !== 'active') {
    return refuse(tx, 'not-active', `transaction is ${tx.state}: participants can enlist only while it is active`);
  }
  const existing = tx.participants.find((q) => q.name === p.name);
  if (existing) {
    if (existing.url === p.url && existing.database === p.database) return unchanged(tx);
    const other = existing.database === null ? 'url' : 'database';
    return refuse(tx, 'conflict', `participant '${p.name}' is already enlisted with another ${other}`);
  }
  return ok({ ...tx, participants: [...tx.participants, newParticipant(p)] }, [FORCED]);
}

/**
 * A one-shot transaction is `active` in memory only between its begin and
 * the commit that comes with it; it records no `preparing`. So a one-shot
 * found `active` by any other prepare or commit was read back from disk
 * (after a crash, or by another instance after a takeover) with its prepares
 * possibly out, and the one that sent them may have heard a no and sent
 * aborts it never wrote (a one-shot's abort is lazy). It is aborted, as its
 * recovery step would (the step may not have run yet): phase one started
 * again could reach commit while those aborts are still on their way.
 */
function reloadedOneShot(tx: Transaction, withBegin: boolean): boolean {
  return tx.oneShot && tx.state === 'active' && !withBegin;
}

function prepare(tx: Transaction, withBegin: boolean, nowMs: number): Result {
  if (reloadedOneShot(tx, withBegin)) return decideAbort(tx, 'recovery', nowMs, 'answers-lost');
  switch (tx.state) {
    case 'active':
      return startPhaseOne(tx, false, nowMs);
    case 'aborting':
    case 'aborted':
      return refuse(tx, 'aborted', abortedDetail(tx));
    default:
      return unchanged(tx); // already preparing, prepared or decided commit
  }
}

function commit(tx: Transaction, withBegin: boolean, nowMs: number): Result {
  if (reloadedOneShot(tx, withBegin)) return decideAbort(tx, 'recovery', nowMs, 'answers-lost');
  switch (tx.state) {
    case 'active':
      return startPhaseOne(tx, true, nowMs);
    case 'preparing':
      return tx.commitRequested ? unchanged(tx) : ok({ ...tx, commitRequested: true }, []);
    case 'prepared':
      return decideCommit({ ...tx, commitRequested: true }, nowMs);
    case 'aborting':
    case 'aborted':
      return refuse(tx, 'aborted', abortedDetail(tx));
    default:
      return unchanged(tx); // committing or committed
  }
}

function requestedAbort(tx: Transaction, reason: 'client' | 'operator', nowMs: number): Result {
  if (tx.outcome === 'commit') return refuse(tx, 'committed', 'the transaction has a commit decision, which is final');
  if (tx.outcome === 'abort') return unchanged(tx);
  return decideAbort(tx, reason, nowMs, preparesOf(tx));
}

/**
 * An operator's "retry now": every participant whose phase-two message failed
 * (and now waits out its backoff) is sent it again at once, its backoff
 * starting over. A participant whose message is out and unanswered, or that
 * has not answered its prepare yet (an abort must never overtake a prepare),
 * has nothing waiting: it is left alone.
 */
function retryNow(tx: Transaction): Result {
  if (tx.outcome === null) {
    return refuse(tx, 'not-decided', 'the transaction is not decided: there is no phase two to retry yet');
  }
  const waiting = tx.participants.filter((p) => !p.acknowledged && p.attempts > 0);
  if (waiting.length === 0) return unchanged(tx);
  const message = tx.outcome === 'commit' ? 'commit' : 'abort';
  const names = new Set(waiting.map((p) => p.name));
  const participants = tx.participants.map((p) => (names.has(p.name) ? { ...p, attempts: 0 } : p));
  return ok(
    { ...tx, participants },
    waiting.map((p) => send(message, p.name, 0)),
  );
}

function startPhaseOne(tx: Transaction, commitRequested: boolean, nowMs: number): Result {
  const next = { ...tx, commitRequested: tx.commitRequested || commitRequested };
  if (next.participants.length === 0) {
    // Nobody to ask: the vote is unanimous at once.
    return next.commitRequested ? decideCommit(next, nowMs) : ok({ ...next, state: 'prepared' }, [FORCED]);
  }
  const sends: Effect[] = next.participants.map((p) => send('prepare', p.name, 0));
  // A one-shot transaction needs no record of this step: recovery aborts an
  // undecided one-shot whatever state it finds. An explicit one is on disk as
  // `preparing` before any prepare leaves, so that recovery aborts it at once
  // (releasing participants that prepared) rather than waiting for a client
  // that may never come back until the deadline.
  const effects = next.oneShot ? sends : [FORCED, ...sends];
  return ok({ ...next, state: 'preparing' }, effects);
}

function vote(
  tx: Transaction,
  name: string,
  vote: Vote,
  voteLost: boolean,
  reason: string | null,
  nowMs: number,
  preparedId: string | null,
): Result {
  const p = participant(tx, name);
  if (p.vote !== null) return unchanged(tx); // a duplicate answer
  const voted: Participant = { ...p, vote, voteLost, reason, preparedId };
  if (tx.state === 'aborting') {
    // The abort was decided while this prepare was on its way; now that the
    // answer is in, the participant hears the abort unless it rolled back.
    const needsAbort = vote === 'yes' || voteLost;
    const next = replace(tx, { ...voted, acknowledged: !needsAbort });
    return needsAbort ? ok(next, [send('abort', name, 0)]) : finishIfDone(next, nowMs);
  }
  if (tx.state !== 'preparing') return unchanged(tx); // answer to a prepare sent before a restart
  const next = replace(tx, voted);
  if (vote === 'no') return decideAbort(next, 'vote', nowMs, 'in-flight');
  if (next.participants.some((q) => q.vote === null)) return ok(next, []);
  if (next.commitRequested) return decideCommit(next, nowMs);
  return ok({ ...next, state: 'prepared' }, [FORCED]);
}

function decideCommit(tx: Transaction, nowMs: number): Result {
  assert(tx.outcome === null, 'a decision is never rewritten');
  assert(
    tx.participants.every((p) => p.vote === 'yes' || p.vote === 'read-only'),
    'commit is decided only when every participant voted yes or read-only',
  );
  const participants = withoutPayloads(tx.participants).map((p) => ({ ...p, acknowledged: p.vote === 'read-only' }));
  const decided: Transaction = { ...tx, outcome: 'commit', decidedAtMs: nowMs, participants };
  const sends = participants.filter((p) => !p.acknowledged).map((p) => send('commit', p.name, 0));
  if (sends.length === 0) {
    return ok({ ...decided, state: 'committed', finishedAtMs: nowMs }, [FORCED, FINISHED]);
  }
  return ok({ ...decided, state: 'committing' }, [FORCED, ...sends]);
}

/**
 * Where the prepares of participants that have not voted stand:
 * - `not-sent`: none was asked to prepare, so none has anything to undo and
 *   none hears anything (an abort sent there would be work for nothing, and
 *   retried forever to an address that may not exist);
 * - `in-flight`: they are out and unanswered; those participants hear the
 *   abort only once their answer is in, so an abort can never overtake a
 *   prepare and leave a participant prepared behind it;
 * - `answers-lost`: they may have been sent before a restart; the answers
 *   will never come, so they hear the abort now.
 */
type Prepares = 'not-sent' | 'in-flight' | 'answers-lost';

/** What an abort decided in memory now knows of its prepares. */
function preparesOf(tx: Transaction): Prepares {
  if (tx.state === 'active') return 'not-sent';
  return tx.state === 'preparing' ? 'in-flight' : 'answers-lost';
}

/** A decided transaction asks nobody to prepare again: its payloads need not stay in memory. */
function withoutPayloads(participants: readonly Participant[]): Participant[] {
  return participants.map((p) => (p.payloadJson === null ? p : { ...p, payloadJson: null }));
}
function decideAbort(tx: Transaction, reason: AbortReason, nowMs: number, prepares: Prepares): Result {
  assert(tx.outcome === null, 'a decision is never rewritten');
  const sends: Effect[] = [];
  const participants = withoutPayloads(tx.participants).map((p) => {
    const rolledBack = p.vote === 'read-only' || (p.vote === 'no' && !p.voteLost);
    if (rolledBack) return { ...p, acknowledged: true };
    if (p.vote === null && prepares === 'not-sent') return { ...p, acknowledged: true };
    if (p.vote === null && prepares === 'in-flight') return { ...p, acknowledged: false };
    sends.push(send('abort', p.name, 0));
    return { ...p, acknowledged: false };
  });
  const done = participants.every((p) => p.acknowledged);
  const decided: Transaction = {
    ...tx,
    state: done ? 'aborted' : 'aborting',
    outcome: 'abort',
    abortReason: reason,
    decidedAtMs: nowMs,
    finishedAtMs: done ? nowMs : null,
    participants,
  };
  return ok(decided, [abortIsForced(tx, reason) ? FORCED : LAZY, ...sends, ...(done ? [FINISHED] : [])]);
}

/**
 * An abort may be written lazily only where recovery reaches abort on its own
 * whatever it finds on disk and whatever the wall clock says then: a one-shot
 * transaction (recovery aborts every undecided one), or an abort decided by
 * recovery itself (from `preparing`, which recovery aborts, or from a one-shot).
 * A deadline abort is not such a case: recovery judges a deadline by the wall
 * clock, and a clock stepped back across a restart would revive the
 * transaction after its abort messages had left.
 */
export function abortIsForced(tx: Transaction, reason: AbortReason): boolean {
  return !tx.oneShot && reason !== 'recovery';
}

function acknowledged(tx: Transaction, name: string, heuristic: Heuristic | null, nowMs: number): Result {
  const p = participant(tx, name);
  if (p.acknowledged || tx.outcome === null) return unchanged(tx);
  const next = replace(tx, { ...p, acknowledged: true, heuristic, lastError: null });
  const done = finishIfDone(next, nowMs);
  // A heuristic outcome is news an operator must see even if nothing else
  // finishes: record it.
  if (done.tx === next && heuristic !== null) return ok(next, [LAZY]);
  return done;
}

function deliveryFailed(tx: Transaction, name: string, error: string): Result {
  const p = participant(tx, name);
  if (p.acknowledged || tx.outcome === null) return unchanged(tx);
  const attempts = p.attempts + 1;
  const message = tx.outcome === 'commit' ? 'commit' : 'abort';
  // The decision is final: the message is retried for as long as it takes.
  return ok(replace(tx, { ...p, attempts, lastError: error }), [send(message, name, attempts)]);
}

/**
 * Restart from what was on disk: votes that were in flight are gone with the
 * process, so an undecided transaction that may have sent prepares is aborted,
 * and a decided one resends its decision to whoever has not acknowledged.
 */
function recover(loaded: Transaction, nowMs: number): Result {
  const tx: Transaction = {
    ...loaded,
    participants: loaded.participants.map((p) => (p.attempts === 0 ? p : { ...p, attempts: 0, lastError: null })),
  };
  const expired = nowMs >= tx.deadlineMs;
  switch (tx.state) {
    case 'active':
      // A one-shot records no `preparing`: its prepares may be out. An
      // explicit one is `preparing` on disk before any prepare leaves.
      if (tx.oneShot) return decideAbort(tx, 'recovery', nowMs, 'answers-lost');
      return expired ? decideAbort(tx, 'deadline', nowMs, 'not-sent') : unchanged(tx);
    case 'preparing':
      return decideAbort(tx, 'recovery', nowMs, 'answers-lost');
    case 'prepared':
      return expired ? decideAbort(tx, 'deadline', nowMs, 'answers-lost') : unchanged(tx);
    case 'committing':
    case 'aborting': {
      const message = tx.outcome === 'commit' ? 'commit' : 'abort';
      const sends = tx.participants.filter((p) => !p.acknowledged).map((p) => send(message, p.name, 0));
      const done = finishIfDone(tx, nowMs);
      return done.tx === tx ? ok(tx, sends) : done;
    }
    case 'committed':
    case 'aborted':
      return ok(tx, [FINISHED]);
  }
}

function finishIfDone(tx: Transaction, nowMs: number): Result {
  if (tx.state !== 'committing' && tx.state !== 'aborting') return ok(tx, []);
  if (tx.participants.some((p) => !p.acknowledged)) return ok(tx, []);
  const state = tx.state === 'committing' ? 'committed' : 'aborted';
  return ok({ ...tx, state, finishedAtMs: nowMs }, [LAZY, FINISHED]);
}

function participant(tx: Transaction, name: string): Participant {
  const p = tx.participants.find((q) => q.name === name);
  assert(p !== undefined, `event for a participant the transaction has: ${name}`);
  return p;
}

function replace(tx: Transaction, p: Participant): Transaction {
  return { ...tx, participants: tx.participants.map((q) => (q.name === p.name ? p : q)) };
}

function send(message: Message, name: string, attempt: number): Effect {
  return { type: 'send', message, participant: name, attempt };
}

/** Why a call on an aborted transaction is refused: one wording wherever it is said. */
export function abortedDetail(tx: Transaction): string {
  return `the transaction was aborted (${tx.abortReason ?? 'unknown reason'})`;
}

/** What the rules return; `step` adds whether anything changed. */
type Result = Omit<Step, 'changed'>;

function ok(tx: Transaction, effects: readonly Effect[]): Result {
  return { tx, effects, refusal: null };
}

function unchanged(tx: Transaction): Result {
  return { tx, effects: [], refusal: null };
}

function refuse(tx: Transaction, code: Refusal['code'], detail: string): Result {
  return { tx, effects: [], refusal: { code, detail } };
}
