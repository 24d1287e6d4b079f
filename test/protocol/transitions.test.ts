// The 2PC rules as pure functions: every transition that matters, with the
// exact effects it asks the runtime to perform, in order. Time is a fixed
// number everywhere; the protocol reads no clock.

import t from 'tap';
import { InvariantError } from '../../src/protocol/assert.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type {
  Effect,
  Event,
  Message,
  NewParticipant,
  Participant,
  Step,
  Transaction,
  Vote,
} from '../../src/protocol/types.js';

const T0 = 1_700_000_000_000;
const TIMEOUT_MS = 30_000;
const DEADLINE = T0 + TIMEOUT_MS;
const NOW = T0 + 1_000;
const LATER = T0 + 2_000;
const EXPIRED = DEADLINE + 1;

const FORCED: Effect = { type: 'persist', forced: true };
const LAZY: Effect = { type: 'persist', forced: false };
const FINISHED: Effect = { type: 'finished' };

function send(message: Message, participant: string, attempt = 0): Effect {
  return { type: 'send', message, participant, attempt };
}

function np(name: string, url = `http://${name}:8080/tx`): NewParticipant {
  return { name, url, database: null, payloadJson: JSON.stringify({ part: name }) };
}

/** Freezes a value all the way down, so a step that mutates its input throws. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

interface BeginOptions {
  readonly oneShot?: boolean;
  readonly id?: string;
}

function begin(names: readonly string[], opts: BeginOptions = {}): Step {
  return createTransaction({
    id: opts.id ?? 'tx_1',
    nowMs: T0,
    timeoutMs: TIMEOUT_MS,
    oneShot: opts.oneShot ?? false,
    participants: names.map((n) => np(n)),
    idempotencyKey: null,
    requestHash: null,
    metadataJson: null,
    traceParent: null,
  });
}

/** Applies one event to a frozen copy of `tx`; the input must never change. */
function apply(tx: Transaction, event: Event, nowMs = NOW): Step {
  return step(deepFreeze(tx), event, nowMs);
}

/** Applies events in order, each expected to be accepted; returns the last transaction. */
function drive(tx: Transaction, ...events: Event[]): Transaction {
  let current = tx;
  for (const event of events) {
    const s = apply(current, event);
    if (s.refusal !== null) throw new Error(`fixture event ${event.type} refused: ${s.refusal.code}`);
    current = s.tx;
  }
  return current;
}

const vote = (participant: string, v: Vote, reason?: string): Event =>
  reason === undefined ? { type: 'vote', participant, vote: v } : { type: 'vote', participant, vote: v, reason };
const lost = (participant: string, reason = 'timeout'): Event => ({ type: 'vote-lost', participant, reason });
const ack = (participant: string): Event => ({ type: 'acknowledged', participant });
const PREPARE: Event = { type: 'prepare' };
const COMMIT: Event = { type: 'commit' };
/** The commit a one-shot begin carries. */
const BEGIN_COMMIT: Event = { type: 'commit', withBegin: true };
const ABORT: Event = { type: 'abort' };
const DEADLINE_EVENT: Event = { type: 'deadline' };
const RECOVER: Event = { type: 'recover' };

// Fixtures, built through the protocol itself so they are states it can reach.
const active = (names: readonly string[], opts: BeginOptions = {}) => begin(names, opts).tx;
const preparing = (names: readonly string[], opts: BeginOptions & { commit?: boolean } = {}) =>
  drive(active(names, opts), opts.oneShot ? BEGIN_COMMIT : opts.commit ? COMMIT : PREPARE);
const prepared = (votes: Record<string, Vote>) => {
  const names = Object.keys(votes);
  return drive(preparing(names), ...names.map((n) => vote(n, votes[n] as Vote)));
};
const committing = (names: readonly string[]) =>
  drive(preparing(names, { commit: true }), ...names.map((n) => vote(n, 'yes')));

/** The participant fields a test cares about, in order. */
function parts(tx: Transaction) {
  return tx.participants.map((p) => ({
    name: p.name,
    vote: p.vote,
    voteLost: p.voteLost,
    acknowledged: p.acknowledged,
    heuristic: p.heuristic,
    attempts: p.attempts,
  }));
}

function part(name: string, fields: Partial<Participant> = {}) {
  return {
    name,
    vote: null,
    voteLost: false,
    acknowledged: false,
    heuristic: null,
    attempts: 0,
    ...fields,
  };
}

t.test("a yes vote keeps what the database participant's vote saw; the decision record carries it", async (t) => {
  const tx = preparing(['orders', 'stock'], { commit: true });
  const first = apply(tx, { type: 'vote', participant: 'orders', vote: 'yes', preparedId: '4294967301' });
  t.equal(first.tx.participants[0]?.preparedId, '4294967301');
  t.equal(first.tx.participants[1]?.preparedId, null, 'the other has not voted');
  const again = apply(first.tx, { type: 'vote', participant: 'orders', vote: 'yes', preparedId: '7' });
  t.equal(again.changed, false, 'a duplicate answer changes nothing');
  t.equal(again.tx.participants[0]?.preparedId, '4294967301');
  const decided = apply(first.tx, vote('stock', 'yes'));
  t.equal(decided.tx.state, 'committing');
  t.same(decided.effects[0], FORCED, 'the decision is forced first');
  t.same(
    decided.tx.participants.map((p) => p.preparedId),
    ['4294967301', null],
    'and holds the id, so a restart has it',
  );
  t.equal(apply(tx, lost('orders')).tx.participants[0]?.preparedId, null, 'a lost vote saw nothing');
});

t.test('create', async (t) => {
  t.test('a new transaction is active, its begin record forced', async (t) => {
    const s = begin(['orders', 'payments']);
    t.same(s.effects, [FORCED]);
    t.equal(s.refusal, null);
    t.equal(s.tx.id, 'tx_1');
    t.equal(s.tx.state, 'active');
    t.equal(s.tx.outcome, null);
    t.equal(s.tx.abortReason, null);
    t.equal(s.tx.oneShot, false);
    t.equal(s.tx.commitRequested, false);
    t.equal(s.tx.createdAtMs, T0);
    t.equal(s.tx.deadlineMs, DEADLINE);
    t.equal(s.tx.decidedAtMs, null);
    t.equal(s.tx.finishedAtMs, null);
    t.same(s.tx.participants, [
      {
        name: 'orders',
        url: 'http://orders:8080/tx',
        database: null,
        payloadJson: '{"part":"orders"}',
        vote: null,
        voteLost: false,
        reason: null,
        preparedId: null,
        acknowledged: false,
        heuristic: null,
        attempts: 0,
        lastError: null,
      },
      {
        name: 'payments',
        url: 'http://payments:8080/tx',
        database: null,
        payloadJson: '{"part":"payments"}',
        vote: null,
        voteLost: false,
        reason: null,
        preparedId: null,
        acknowledged: false,
        heuristic: null,
        attempts: 0,
        lastError: null,
      },
    ]);
  });

  t.test('a one-shot transaction is active and forced too', async (t) => {
    const s = begin(['orders'], { oneShot: true });
    t.same(s.effects, [FORCED]);
    t.equal(s.tx.state, 'active');
    t.equal(s.tx.oneShot, true);
  });

  t.test('duplicate participant names or a non-positive timeout break an invariant', async (t) => {
    t.throws(() => begin(['a', 'a']), InvariantError);
    t.throws(
      () =>
        createTransaction({
          id: 'tx_1',
          nowMs: T0,
          timeoutMs: 0,
          oneShot: false,
          participants: [],
          idempotencyKey: null,
          requestHash: null,
          metadataJson: null,
          traceParent: null,
        }),
      InvariantError,
    );
  });
});

t.test('enlist', async (t) => {
  t.test('a new participant is added with a forced persist', async (t) => {
    const s = apply(active(['a']), { type: 'enlist', participant: np('b') });
    t.equal(s.refusal, null);
    t.same(s.effects, [FORCED]);
    t.equal(s.tx.state, 'active');
    t.same(parts(s.tx), [part('a'), part('b')]);
    t.equal(s.tx.participants[1]?.url, 'http://b:8080/tx');
    t.equal(s.tx.participants[1]?.payloadJson, '{"part":"b"}');
  });

  t.test('the same name and url again is a no-op', async (t) => {
    const tx = active(['a']);
    const s = apply(tx, { type: 'enlist', participant: np('a') });
    t.equal(s.refusal, null);
    t.same(s.effects, []);
    t.equal(s.tx, tx);
  });

  t.test('a taken name with another url is refused as a conflict', async (t) => {
    const tx = active(['a']);
    const s = apply(tx, { type: 'enlist', participant: np('a', 'http://elsewhere:9090/tx') });
    t.equal(s.refusal?.code, 'conflict');
    t.match(s.refusal?.detail, /'a'/);
    t.same(s.effects, []);
    t.equal(s.tx, tx);
  });

  t.test(
    'a database participant: same database again is a no-op; another database or a url is a conflict',
    async (t) => {
      const db = (name: string, database: string): NewParticipant => ({ name, url: null, database, payloadJson: null });
      const tx = apply(active(['a']), { type: 'enlist', participant: db('d', 'orders-db') }).tx;
      t.same(tx.participants[1], { ...tx.participants[1], url: null, database: 'orders-db' }, 'the database is kept');
      const again = apply(tx, { type: 'enlist', participant: db('d', 'orders-db') });
      t.equal(again.refusal, null);
      t.equal(again.tx, tx);
      const elsewhere = apply(tx, { type: 'enlist', participant: db('d', 'stock-db') });
      t.equal(elsewhere.refusal?.code, 'conflict');
      t.match(elsewhere.refusal?.detail, /another database/);
      const asUrl = apply(tx, { type: 'enlist', participant: np('d') });
      t.equal(asUrl.refusal?.code, 'conflict', 'an HTTP participant under a database participant name');
      const asDb = apply(tx, { type: 'enlist', participant: db('a', 'orders-db') });
      t.equal(asDb.refusal?.code, 'conflict', 'a database participant under an HTTP participant name');
      t.equal(asDb.tx, tx);
    },
  );

  t.test('refused once prepare began, whatever came of it', async (t) => {
    const fixtures: Record<string, Transaction> = {
      preparing: preparing(['a']),
      prepared: prepared({ a: 'yes' }),
      committing: committing(['a']),
      aborted: drive(active(['a']), ABORT, ack('a')),
      'prepared, no participants': drive(active([]), PREPARE),
    };
    for (const [label, tx] of Object.entries(fixtures)) {
      const s = apply(tx, { type: 'enlist', participant: np('z') });
      t.equal(s.refusal?.code, 'not-active', label);
      t.same(s.effects, [], label);
      t.equal(s.tx, tx, label);
    }
  });

  t.test('a one-shot transaction takes no enlistment, even while active', async (t) => {
    const tx = active(['a'], { oneShot: true });
    const s = apply(tx, { type: 'enlist', participant: np('b') });
    t.equal(s.refusal?.code, 'not-active');
    t.same(s.effects, []);
    t.equal(s.tx, tx);
  });
});

t.test('prepare', async (t) => {
  t.test(
    'active -> preparing: a forced persist (recovery must know prepares may be out), then a prepare to every participant',
    async (t) => {
      const s = apply(active(['a', 'b', 'c']), PREPARE);
      t.equal(s.refusal, null);
      t.equal(s.tx.state, 'preparing');
      t.equal(s.tx.outcome, null);
      t.equal(s.tx.commitRequested, false);
      t.same(s.effects, [FORCED, send('prepare', 'a'), send('prepare', 'b'), send('prepare', 'c')]);
      t.same(parts(s.tx), [part('a'), part('b'), part('c')]);
    },
  );

  t.test('commit on an active explicit transaction prepares the same way and remembers the commit', async (t) => {
    const s = apply(active(['a', 'b']), COMMIT);
    t.equal(s.tx.state, 'preparing');
    t.equal(s.tx.commitRequested, true);
    t.same(s.effects, [FORCED, send('prepare', 'a'), send('prepare', 'b')]);
  });

  t.test('a one-shot transaction sends its prepares without a persist', async (t) => {
    const s = apply(active(['a', 'b'], { oneShot: true }), BEGIN_COMMIT);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'preparing');
    t.equal(s.tx.commitRequested, true);
    t.same(s.effects, [send('prepare', 'a'), send('prepare', 'b')]);
  });

  t.test('zero participants: prepare goes straight to prepared, forced', async (t) => {
    const s = apply(active([]), PREPARE);
    t.equal(s.tx.state, 'prepared');
    t.equal(s.tx.outcome, null);
    t.same(s.effects, [FORCED]);
  });

  t.test('zero participants: commit decides commit at once and finishes', async (t) => {
    const s = apply(active([]), COMMIT, LATER);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'committed');
    t.equal(s.tx.outcome, 'commit');
    t.equal(s.tx.decidedAtMs, LATER);
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('prepare again once phase one began is a no-op', async (t) => {
    for (const tx of [preparing(['a']), prepared({ a: 'yes' }), committing(['a'])]) {
      const s = apply(tx, PREPARE);
      t.equal(s.refusal, null, tx.state);
      t.same(s.effects, [], tx.state);
      t.equal(s.tx, tx, tx.state);
    }
  });
});

t.test('votes', async (t) => {
  t.test('all yes without a commit request -> prepared, forced', async (t) => {
    const first = apply(preparing(['a', 'b']), vote('a', 'yes'));
    t.equal(first.tx.state, 'preparing');
    t.same(first.effects, [], 'a vote that is not the last one changes nothing durable');
    t.same(parts(first.tx), [part('a', { vote: 'yes' }), part('b')]);
    const last = apply(first.tx, vote('b', 'yes'));
    t.equal(last.tx.state, 'prepared');
    t.equal(last.tx.outcome, null);
    t.same(last.effects, [FORCED]);
    t.same(parts(last.tx), [part('a', { vote: 'yes' }), part('b', { vote: 'yes' })]);
  });

  t.test('all yes with commit requested -> committing, the decision forced before any commit', async (t) => {
    const tx = drive(preparing(['a', 'b'], { commit: true }), vote('b', 'yes'));
    const s = apply(tx, vote('a', 'yes'), LATER);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'committing');
    t.equal(s.tx.outcome, 'commit');
    t.equal(s.tx.decidedAtMs, LATER);
    t.equal(s.tx.finishedAtMs, null);
    t.same(s.effects, [FORCED, send('commit', 'a'), send('commit', 'b')]);
    t.same(parts(s.tx), [part('a', { vote: 'yes' }), part('b', { vote: 'yes' })]);
  });

  t.test('a one-shot commit decision is forced too', async (t) => {
    const s = apply(preparing(['a'], { oneShot: true }), vote('a', 'yes'));
    t.equal(s.tx.state, 'committing');
    t.same(s.effects, [FORCED, send('commit', 'a')]);
  });

  t.test('commit asked while preparing is remembered, once', async (t) => {
    const tx = preparing(['a', 'b']);
    const asked = apply(tx, COMMIT);
    t.equal(asked.refusal, null);
    t.equal(asked.tx.state, 'preparing');
    t.equal(asked.tx.commitRequested, true);
    t.same(asked.effects, []);
    const again = apply(asked.tx, COMMIT);
    t.equal(again.tx, asked.tx);
    t.same(again.effects, []);
    const decided = apply(drive(asked.tx, vote('a', 'yes')), vote('b', 'yes'));
    t.equal(decided.tx.state, 'committing');
    t.same(decided.effects, [FORCED, send('commit', 'a'), send('commit', 'b')]);
  });

  t.test('commit on a prepared transaction decides commit', async (t) => {
    const s = apply(prepared({ a: 'yes', b: 'read-only' }), COMMIT, LATER);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'committing');
    t.equal(s.tx.outcome, 'commit');
    t.equal(s.tx.commitRequested, true);
    t.equal(s.tx.decidedAtMs, LATER);
    t.same(s.effects, [FORCED, send('commit', 'a')]);
  });

  t.test('read-only voters get no commit and are acknowledged at once', async (t) => {
    const tx = drive(preparing(['a', 'b', 'c'], { commit: true }), vote('a', 'read-only'), vote('b', 'yes'));
    const s = apply(tx, vote('c', 'read-only'));
    t.equal(s.tx.state, 'committing');
    t.same(s.effects, [FORCED, send('commit', 'b')]);
    t.same(parts(s.tx), [
      part('a', { vote: 'read-only', acknowledged: true }),
      part('b', { vote: 'yes', acknowledged: false }),
      part('c', { vote: 'read-only', acknowledged: true }),
    ]);
  });

  t.test('all read-only with commit requested -> committed and finished', async (t) => {
    const tx = drive(preparing(['a', 'b'], { commit: true }), vote('a', 'read-only'));
    const s = apply(tx, vote('b', 'read-only'), LATER);
    t.equal(s.tx.state, 'committed');
    t.equal(s.tx.outcome, 'commit');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [FORCED, FINISHED]);
    t.same(parts(s.tx), [
      part('a', { vote: 'read-only', acknowledged: true }),
      part('b', { vote: 'read-only', acknowledged: true }),
    ]);
  });

  t.test('all read-only without a commit request -> prepared; the commit then finishes at once', async (t) => {
    const tx = prepared({ a: 'read-only' });
    t.equal(tx.state, 'prepared');
    const s = apply(tx, COMMIT);
    t.equal(s.tx.state, 'committed');
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('a no aborts an explicit transaction, forced; in-flight prepares hear nothing yet', async (t) => {
    const tx = drive(preparing(['a', 'b', 'c', 'd']), vote('a', 'yes'), vote('b', 'read-only'));
    const s = apply(tx, vote('c', 'no', 'out of stock'), LATER);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.outcome, 'abort');
    t.equal(s.tx.abortReason, 'vote');
    t.equal(s.tx.decidedAtMs, LATER);
    t.same(s.effects, [FORCED, send('abort', 'a')]);
    t.same(parts(s.tx), [
      part('a', { vote: 'yes' }),
      part('b', { vote: 'read-only', acknowledged: true }),
      part('c', { vote: 'no', acknowledged: true }),
      part('d'),
    ]);
    t.equal(s.tx.participants[2]?.reason, 'out of stock');
  });

  t.test('a no aborts a one-shot transaction lazily', async (t) => {
    const tx = drive(preparing(['a', 'b'], { oneShot: true }), vote('a', 'yes'));
    const s = apply(tx, vote('b', 'no'));
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'vote');
    t.same(s.effects, [LAZY, send('abort', 'a')]);
  });

  t.test('a no as the only vote finishes the abort at once', async (t) => {
    const s = apply(preparing(['a']), vote('a', 'no'), LATER);
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('a lost vote aborts, and its participant does hear the abort', async (t) => {
    const tx = drive(preparing(['a', 'b']), vote('a', 'read-only'));
    const s = apply(tx, lost('b', 'connection refused'));
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'vote');
    t.same(s.effects, [FORCED, send('abort', 'b')]);
    t.same(parts(s.tx), [
      part('a', { vote: 'read-only', acknowledged: true }),
      part('b', { vote: 'no', voteLost: true }),
    ]);
    t.equal(s.tx.participants[1]?.reason, 'connection refused');
  });

  t.test('a vote arriving after the abort: yes or lost hears the abort, no or read-only nothing', async (t) => {
    // a votes no while b, c, d, e still have prepares out.
    const aborted = drive(preparing(['a', 'b', 'c', 'd', 'e']), vote('a', 'no'));
    t.equal(aborted.state, 'aborting');

    const yes = apply(aborted, vote('b', 'yes'));
    t.same(yes.effects, [send('abort', 'b')]);
    t.equal(yes.tx.state, 'aborting');
    t.same(parts(yes.tx)[1], part('b', { vote: 'yes', acknowledged: false }));

    const gone = apply(yes.tx, lost('c'));
    t.same(gone.effects, [send('abort', 'c')]);
    t.same(parts(gone.tx)[2], part('c', { vote: 'no', voteLost: true, acknowledged: false }));

    const no = apply(gone.tx, vote('d', 'no'));
    t.same(no.effects, []);
    t.same(parts(no.tx)[3], part('d', { vote: 'no', acknowledged: true }));

    const readOnly = apply(no.tx, vote('e', 'read-only'));
    t.same(readOnly.effects, []);
    t.equal(readOnly.tx.state, 'aborting');
    t.same(parts(readOnly.tx)[4], part('e', { vote: 'read-only', acknowledged: true }));

    const done = drive(readOnly.tx, ack('b'));
    const last = apply(done, ack('c'), LATER);
    t.equal(last.tx.state, 'aborted');
    t.equal(last.tx.finishedAtMs, LATER);
    t.same(last.effects, [LAZY, FINISHED]);
  });

  t.test('a late no or read-only that completes the abort finishes it', async (t) => {
    const aborted = drive(preparing(['a', 'b']), vote('a', 'no'));
    const s = apply(aborted, vote('b', 'read-only'), LATER);
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [LAZY, FINISHED]);
  });

  t.test('duplicate votes are ignored', async (t) => {
    const tx = drive(preparing(['a', 'b']), vote('a', 'yes'));
    for (const event of [vote('a', 'yes'), vote('a', 'no'), lost('a'), vote('a', 'read-only')]) {
      const s = apply(tx, event);
      t.equal(s.tx, tx, `${event.type} again`);
      t.same(s.effects, []);
      t.equal(s.refusal, null);
    }
    const aborted = drive(tx, vote('b', 'no'));
    const again = apply(aborted, vote('b', 'yes'));
    t.equal(again.tx, aborted, 'a second vote after the abort sends nothing');
    t.same(again.effects, []);
  });

  t.test('a vote for a transaction that is not preparing changes nothing', async (t) => {
    // An answer to a prepare this process never sent (e.g. one sent before a
    // restart, for a transaction recovered as active).
    const tx = active(['a']);
    const s = apply(tx, vote('a', 'no'));
    t.equal(s.tx, tx);
    t.equal(s.refusal, null);
    t.same(s.effects, []);
  });
});

t.test('refusals: a decision is never taken twice', async (t) => {
  t.test('commit after an abort is refused as aborted', async (t) => {
    const aborting = drive(active(['a']), ABORT);
    const aborted = drive(aborting, ack('a'));
    for (const tx of [aborting, aborted]) {
      const s = apply(tx, COMMIT);
      t.equal(s.refusal?.code, 'aborted', tx.state);
      t.match(s.refusal?.detail, /client/);
      t.same(s.effects, []);
      t.equal(s.tx, tx);
    }
  });

  t.test('prepare after an abort is refused as aborted', async (t) => {
    const tx = drive(preparing(['a']), vote('a', 'no'));
    const s = apply(tx, PREPARE);
    t.equal(s.refusal?.code, 'aborted');
    t.match(s.refusal?.detail, /vote/);
    t.same(s.effects, []);
    t.equal(s.tx, tx);
  });

  t.test('abort after a commit decision is refused as committed', async (t) => {
    const c = committing(['a']);
    const done = drive(c, ack('a'));
    for (const tx of [c, done]) {
      const s = apply(tx, ABORT);
      t.equal(s.refusal?.code, 'committed', tx.state);
      t.same(s.effects, []);
      t.equal(s.tx, tx);
      t.equal(s.tx.outcome, 'commit');
    }
  });

  t.test('commit again on a committing or committed transaction is a no-op', async (t) => {
    const c = committing(['a']);
    for (const tx of [c, drive(c, ack('a'))]) {
      const s = apply(tx, COMMIT);
      t.equal(s.refusal, null);
      t.same(s.effects, []);
      t.equal(s.tx, tx);
    }
  });

  t.test('abort twice is a no-op', async (t) => {
    const once = apply(active(['a', 'b']), ABORT);
    t.equal(once.refusal, null);
    const twice = apply(once.tx, ABORT);
    t.equal(twice.refusal, null);
    t.same(twice.effects, []);
    t.equal(twice.tx, once.tx);
    const finished = drive(once.tx, ack('a'), ack('b'));
    t.equal(finished.state, 'aborted');
    const thrice = apply(finished, ABORT);
    t.same(thrice.effects, []);
    t.equal(thrice.tx, finished);
  });
});

t.test('client abort', async (t) => {
  t.test(
    'an active transaction: forced, and finished at once: nobody was asked to prepare, nobody hears anything',
    async (t) => {
      const s = apply(active(['a', 'b']), ABORT, LATER);
      t.equal(s.refusal, null);
      t.equal(s.tx.state, 'aborted');
      t.equal(s.tx.outcome, 'abort');
      t.equal(s.tx.abortReason, 'client');
      t.equal(s.tx.decidedAtMs, LATER);
      t.equal(s.tx.finishedAtMs, LATER);
      t.same(s.effects, [FORCED, FINISHED]);
      t.same(parts(s.tx), [part('a', { acknowledged: true }), part('b', { acknowledged: true })]);
    },
  );

  t.test('an active transaction without participants: forced, aborted and finished', async (t) => {
    const s = apply(active([]), ABORT, LATER);
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('while preparing: forced, abort to yes voters, in-flight prepares wait for their answer', async (t) => {
    const tx = drive(preparing(['a', 'b', 'c']), vote('a', 'yes'), vote('b', 'read-only'));
    const s = apply(tx, ABORT);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'client');
    t.same(s.effects, [FORCED, send('abort', 'a')]);
    t.same(parts(s.tx), [part('a', { vote: 'yes' }), part('b', { vote: 'read-only', acknowledged: true }), part('c')]);
    const late = apply(s.tx, vote('c', 'yes'));
    t.same(late.effects, [send('abort', 'c')]);
  });

  t.test('a prepared transaction: forced, abort to yes voters only', async (t) => {
    const s = apply(prepared({ a: 'yes', b: 'read-only', c: 'yes' }), ABORT);
    t.equal(s.tx.state, 'aborting');
    t.same(s.effects, [FORCED, send('abort', 'a'), send('abort', 'c')]);
  });
});

t.test('deadline', async (t) => {
  t.test('before it passes, the deadline event changes nothing', async (t) => {
    for (const tx of [active(['a']), preparing(['a']), prepared({ a: 'yes' })]) {
      const s = apply(tx, DEADLINE_EVENT, DEADLINE - 1);
      t.equal(s.tx, tx, tx.state);
      t.same(s.effects, []);
      t.equal(s.refusal, null);
    }
  });

  t.test(
    'an active transaction at its deadline aborts, forced (a clock stepped back must not revive it), reason deadline',
    async (t) => {
      const s = apply(active(['a', 'b']), DEADLINE_EVENT, DEADLINE);
      t.equal(s.refusal, null);
      t.equal(s.tx.state, 'aborted', 'finished at once: nobody was asked to prepare');
      t.equal(s.tx.outcome, 'abort');
      t.equal(s.tx.abortReason, 'deadline');
      t.equal(s.tx.decidedAtMs, DEADLINE);
      t.same(s.effects, [FORCED, FINISHED]);
    },
  );

  t.test('a preparing transaction past its deadline aborts, forced; in-flight prepares wait', async (t) => {
    const tx = drive(preparing(['a', 'b']), vote('a', 'yes'));
    const s = apply(tx, DEADLINE_EVENT, EXPIRED);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'deadline');
    t.same(s.effects, [FORCED, send('abort', 'a')]);
    t.same(parts(s.tx), [part('a', { vote: 'yes' }), part('b')]);
  });

  t.test('a prepared transaction past its deadline aborts, forced before its abort messages leave', async (t) => {
    const s = apply(prepared({ a: 'yes', b: 'read-only' }), DEADLINE_EVENT, EXPIRED);
    t.equal(s.tx.state, 'aborting');
    t.same(s.effects, [FORCED, send('abort', 'a')]);
  });

  t.test('commit on a prepared transaction after its deadline first aborts, then is refused', async (t) => {
    const s = apply(prepared({ a: 'yes', b: 'yes' }), COMMIT, EXPIRED);
    t.equal(s.refusal?.code, 'aborted');
    t.match(s.refusal?.detail, /deadline/);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.outcome, 'abort');
    t.equal(s.tx.abortReason, 'deadline');
    t.equal(s.tx.commitRequested, false);
    t.same(s.effects, [FORCED, send('abort', 'a'), send('abort', 'b')]);
  });

  t.test('prepare or enlist after the deadline first aborts, then is refused', async (t) => {
    const p = apply(active(['a']), PREPARE, EXPIRED);
    t.equal(p.refusal?.code, 'aborted');
    t.equal(p.tx.abortReason, 'deadline');
    t.same(p.effects, [FORCED, FINISHED], 'no prepare and no abort is sent');
    const e = apply(active(['a']), { type: 'enlist', participant: np('b') }, EXPIRED);
    t.equal(e.refusal?.code, 'not-active');
    t.equal(e.tx.state, 'aborted');
    t.equal(e.tx.participants.length, 1);
    t.same(e.effects, [FORCED, FINISHED]);
  });

  t.test('a client abort after the deadline is the deadline abort', async (t) => {
    const s = apply(active(['a']), ABORT, EXPIRED);
    t.equal(s.refusal, null);
    t.equal(s.tx.abortReason, 'deadline');
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('a vote after the deadline: the abort comes first, then the yes voter hears it', async (t) => {
    const s = apply(preparing(['a', 'b']), vote('a', 'yes'), EXPIRED);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'deadline');
    t.same(s.effects, [FORCED, send('abort', 'a')]);
    t.same(parts(s.tx), [part('a', { vote: 'yes' }), part('b')]);
  });

  t.test('the last yes after the deadline cannot commit', async (t) => {
    const tx = drive(preparing(['a', 'b'], { commit: true }), vote('a', 'yes'));
    const s = apply(tx, vote('b', 'yes'), EXPIRED);
    t.equal(s.tx.outcome, 'abort');
    t.equal(s.tx.state, 'aborting');
    t.same(s.effects, [FORCED, send('abort', 'a'), send('abort', 'b')]);
  });

  t.test('a decided commit is never aborted by a deadline', async (t) => {
    const tx = committing(['a', 'b']);
    const d = apply(tx, DEADLINE_EVENT, EXPIRED);
    t.equal(d.tx, tx);
    t.same(d.effects, []);
    const abort = apply(tx, ABORT, EXPIRED);
    t.equal(abort.refusal?.code, 'committed');
    t.same(abort.effects, []);
    const a = apply(tx, ack('a'), EXPIRED);
    t.equal(a.tx.outcome, 'commit');
    t.equal(a.tx.state, 'committing');
    const b = apply(a.tx, ack('b'), EXPIRED);
    t.equal(b.tx.state, 'committed');
    t.same(b.effects, [LAZY, FINISHED]);
  });

  t.test('an aborted transaction past its deadline is not decided again', async (t) => {
    const tx = drive(active(['a']), ABORT);
    const s = apply(tx, DEADLINE_EVENT, EXPIRED);
    t.equal(s.tx, tx);
    t.same(s.effects, []);
    t.equal(s.tx.abortReason, 'client');
  });
});

t.test('phase two', async (t) => {
  t.test('acknowledgements: the last one finishes committed, lazy persist then finished', async (t) => {
    const tx = committing(['a', 'b']);
    const first = apply(tx, ack('b'));
    t.equal(first.tx.state, 'committing');
    t.same(first.effects, []);
    t.same(parts(first.tx), [part('a', { vote: 'yes' }), part('b', { vote: 'yes', acknowledged: true })]);
    const last = apply(first.tx, ack('a'), LATER);
    t.equal(last.refusal, null);
    t.equal(last.tx.state, 'committed');
    t.equal(last.tx.outcome, 'commit');
    t.equal(last.tx.finishedAtMs, LATER);
    t.same(last.effects, [LAZY, FINISHED]);
  });

  t.test('acknowledgements: the last one finishes aborted, lazy persist then finished', async (t) => {
    const tx = drive(prepared({ a: 'yes', b: 'yes' }), ABORT, ack('a'));
    const s = apply(tx, ack('b'), LATER);
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [LAZY, FINISHED]);
  });

  t.test('an acknowledgement twice, or before any decision, changes nothing', async (t) => {
    const tx = drive(committing(['a', 'b']), ack('a'));
    const again = apply(tx, ack('a'));
    t.equal(again.tx, tx);
    t.same(again.effects, []);
    const undecided = prepared({ a: 'yes' });
    const early = apply(undecided, ack('a'));
    t.equal(early.tx, undecided);
    t.same(early.effects, []);
  });

  t.test('a heuristic answer is recorded and acknowledged, with a lazy persist', async (t) => {
    const tx = committing(['a', 'b']);
    const s = apply(tx, { type: 'heuristic', participant: 'a', heuristic: 'abort' });
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'committing');
    t.equal(s.tx.outcome, 'commit', 'a heuristic answer never changes the decision');
    t.same(s.effects, [LAZY]);
    t.same(parts(s.tx), [
      part('a', { vote: 'yes', acknowledged: true, heuristic: 'abort' }),
      part('b', { vote: 'yes' }),
    ]);
    const last = apply(s.tx, { type: 'heuristic', participant: 'b', heuristic: 'abort' }, LATER);
    t.equal(last.tx.state, 'committed');
    t.same(last.effects, [LAZY, FINISHED]);
    t.equal(last.tx.participants[1]?.heuristic, 'abort');
  });

  t.test('a heuristic commit on an abort is recorded the same way', async (t) => {
    const tx = drive(prepared({ a: 'yes' }), ABORT);
    const s = apply(tx, { type: 'heuristic', participant: 'a', heuristic: 'commit' });
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.outcome, 'abort');
    t.same(s.effects, [LAZY, FINISHED]);
    t.same(parts(s.tx), [part('a', { vote: 'yes', acknowledged: true, heuristic: 'commit' })]);
  });

  t.test('a failed delivery counts an attempt and retries with attempt = attempts', async (t) => {
    const tx = committing(['a', 'b']);
    const first = apply(tx, { type: 'delivery-failed', participant: 'b', error: 'ECONNREFUSED' });
    t.equal(first.refusal, null);
    t.equal(first.tx.state, 'committing');
    t.same(first.effects, [send('commit', 'b', 1)]);
    t.equal(first.tx.participants[1]?.attempts, 1);
    t.equal(first.tx.participants[1]?.lastError, 'ECONNREFUSED');
    const second = apply(first.tx, { type: 'delivery-failed', participant: 'b', error: '503' });
    t.same(second.effects, [send('commit', 'b', 2)]);
    t.equal(second.tx.participants[1]?.attempts, 2);
    t.equal(second.tx.participants[1]?.lastError, '503');
    const acked = apply(second.tx, ack('b'));
    t.equal(acked.tx.participants[1]?.acknowledged, true);
    t.equal(acked.tx.participants[1]?.lastError, null);
  });

  t.test('a failed abort delivery retries the abort', async (t) => {
    const tx = drive(prepared({ a: 'yes' }), ABORT);
    const s = apply(tx, { type: 'delivery-failed', participant: 'a', error: 'timeout' });
    t.same(s.effects, [send('abort', 'a', 1)]);
  });

  t.test('a failed delivery to a participant already done, or before a decision, changes nothing', async (t) => {
    const tx = drive(committing(['a', 'b']), ack('a'));
    const s = apply(tx, { type: 'delivery-failed', participant: 'a', error: 'late' });
    t.equal(s.tx, tx);
    t.same(s.effects, []);
    const undecided = prepared({ a: 'yes' });
    const u = apply(undecided, { type: 'delivery-failed', participant: 'a', error: 'late' });
    t.equal(u.tx, undecided);
    t.same(u.effects, []);
  });
});

t.test('recover', async (t) => {
  /** As read back from the log: attempts were never durable. */
  const withAttempts = (tx: Transaction, attempts: number): Transaction => ({
    ...tx,
    participants: tx.participants.map((p) => ({ ...p, attempts, lastError: attempts > 0 ? 'boom' : null })),
  });

  t.test('an active explicit transaction stays active', async (t) => {
    const tx = active(['a']);
    const s = apply(tx, RECOVER, LATER);
    t.equal(s.tx.state, 'active');
    t.equal(s.tx.outcome, null);
    t.same(s.effects, []);
    t.equal(s.refusal, null);
  });

  t.test('an active explicit transaction past its deadline aborts, telling nobody: it sent no prepare', async (t) => {
    const s = apply(active(['a', 'b']), RECOVER, EXPIRED);
    t.equal(s.tx.state, 'aborted');
    t.equal(s.tx.abortReason, 'deadline');
    t.same(s.effects, [FORCED, FINISHED]);
  });

  t.test('an active one-shot transaction aborts: its prepares may be out', async (t) => {
    const s = apply(active(['a', 'b'], { oneShot: true }), RECOVER, LATER);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.outcome, 'abort');
    t.equal(s.tx.abortReason, 'recovery');
    t.equal(s.tx.decidedAtMs, LATER);
    t.same(s.effects, [LAZY, send('abort', 'a'), send('abort', 'b')]);
  });

  t.test(
    "a one-shot read back active aborts on any prepare or commit but its begin's, as recovery would",
    async (t) => {
      // Its prepares may be out, and whoever sent them may have sent aborts it
      // never wrote. Until its recovery step runs, a client's retried commit or
      // a prepare must not start phase one again.
      for (const event of [COMMIT, PREPARE]) {
        const s = apply(active(['a', 'b'], { oneShot: true }), event, LATER);
        t.equal(s.tx.outcome, 'abort', `${event.type}: aborted`);
        t.equal(s.tx.abortReason, 'recovery');
        t.same(s.effects, [LAZY, send('abort', 'a'), send('abort', 'b')], "lazy, as recovery's own abort is");
        t.equal(s.refusal, null);
      }
      const begun = apply(active(['a', 'b'], { oneShot: true }), BEGIN_COMMIT, LATER);
      t.equal(begun.tx.state, 'preparing', 'the commit its begin carries starts phase one');
      const explicit = apply(active(['a', 'b']), COMMIT, LATER);
      t.equal(
        explicit.tx.state,
        'preparing',
        'an explicit transaction read back active never sent a prepare: it goes on',
      );
    },
  );

  t.test('a preparing transaction aborts; everyone who did not roll back hears it, null votes included', async (t) => {
    const tx = drive(preparing(['a', 'b', 'c', 'd', 'e']), vote('a', 'yes'), vote('b', 'read-only'));
    // c's explicit no and d's lost vote, as if the log had them.
    const loaded: Transaction = {
      ...tx,
      participants: tx.participants.map((p) =>
        p.name === 'c'
          ? { ...p, vote: 'no' as const }
          : p.name === 'd'
            ? { ...p, vote: 'no' as const, voteLost: true }
            : p,
      ),
    };
    const s = apply(loaded, RECOVER, LATER);
    t.equal(s.tx.state, 'aborting');
    t.equal(s.tx.abortReason, 'recovery');
    t.same(s.effects, [LAZY, send('abort', 'a'), send('abort', 'd'), send('abort', 'e')]);
    t.same(parts(s.tx), [
      part('a', { vote: 'yes' }),
      part('b', { vote: 'read-only', acknowledged: true }),
      part('c', { vote: 'no', acknowledged: true }),
      part('d', { vote: 'no', voteLost: true }),
      part('e'),
    ]);
  });

  t.test('a preparing transaction with no votes on disk sends abort to all', async (t) => {
    const s = apply(preparing(['a', 'b']), RECOVER, LATER);
    t.same(s.effects, [LAZY, send('abort', 'a'), send('abort', 'b')]);
  });

  t.test('a prepared transaction waits for its client until its deadline', async (t) => {
    const tx = prepared({ a: 'yes', b: 'read-only' });
    const waits = apply(tx, RECOVER, LATER);
    t.equal(waits.tx.state, 'prepared');
    t.same(waits.effects, []);
    const expired = apply(tx, RECOVER, EXPIRED);
    t.equal(expired.tx.state, 'aborting');
    t.equal(expired.tx.abortReason, 'deadline');
    t.same(expired.effects, [FORCED, send('abort', 'a')]);
  });

  t.test('a committing transaction resends commit to the unacknowledged only, attempts reset', async (t) => {
    const tx = withAttempts(
      drive(preparing(['a', 'b', 'c'], { commit: true }), vote('a', 'yes'), vote('b', 'read-only'), vote('c', 'yes')),
      3,
    );
    const loaded = drive(tx, ack('a'));
    const s = apply(loaded, RECOVER, EXPIRED);
    t.equal(s.refusal, null);
    t.equal(s.tx.state, 'committing', 'a deadline never touches a decided commit');
    t.equal(s.tx.outcome, 'commit');
    t.same(s.effects, [send('commit', 'c', 0)]);
    t.same(
      s.tx.participants.map((p) => [p.attempts, p.lastError]),
      [
        [0, null],
        [0, null],
        [0, null],
      ],
    );
  });

  t.test('an aborting transaction resends abort to the unacknowledged only', async (t) => {
    const tx = withAttempts(drive(prepared({ a: 'yes', b: 'yes', c: 'read-only' }), ABORT, ack('b')), 2);
    const s = apply(tx, RECOVER, LATER);
    t.equal(s.tx.state, 'aborting');
    t.same(s.effects, [send('abort', 'a', 0)]);
    t.equal(s.tx.participants[0]?.attempts, 0);
  });

  t.test('an aborting transaction with votes in flight resends abort to them too', async (t) => {
    // Aborted by a no while b's prepare was out: b's answer died with the process.
    const tx = drive(preparing(['a', 'b']), vote('a', 'no'));
    const s = apply(tx, RECOVER, LATER);
    t.same(s.effects, [send('abort', 'b', 0)]);
  });

  t.test('a decided transaction found fully acknowledged finishes', async (t) => {
    const tx = committing(['a']);
    const loaded: Transaction = { ...tx, participants: tx.participants.map((p) => ({ ...p, acknowledged: true })) };
    const s = apply(loaded, RECOVER, LATER);
    t.equal(s.tx.state, 'committed');
    t.equal(s.tx.finishedAtMs, LATER);
    t.same(s.effects, [LAZY, FINISHED]);
  });

  t.test('committed and aborted transactions are finished', async (t) => {
    const committed = drive(committing(['a']), ack('a'));
    const aborted = drive(active(['a']), ABORT, ack('a'));
    for (const tx of [committed, aborted]) {
      const s = apply(tx, RECOVER, EXPIRED);
      t.equal(s.tx.state, tx.state);
      t.equal(s.tx.outcome, tx.outcome);
      t.same(s.effects, [FINISHED]);
    }
  });
});

t.test('invariants', async (t) => {
  t.test('no sequence of votes yields a commit unless every vote is yes or read-only', async (t) => {
    const kinds = ['yes', 'read-only', 'no', 'lost'] as const;
    const names = ['a', 'b', 'c'];
    const orders = [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
    ];
    let cases = 0;
    for (const x of kinds) {
      for (const y of kinds) {
        for (const z of kinds) {
          const answers = [x, y, z];
          const unanimous = answers.every((k) => k === 'yes' || k === 'read-only');
          for (const order of orders) {
            for (const commitFirst of [true, false]) {
              let tx = preparing(names, { commit: commitFirst });
              const committed: Transaction[] = [];
              for (const i of order) {
                const name = names[i] as string;
                const k = answers[i] as (typeof kinds)[number];
                tx = apply(tx, k === 'lost' ? lost(name) : vote(name, k)).tx;
                if (tx.outcome === 'commit') committed.push(tx);
              }
              if (!commitFirst) {
                const s = apply(tx, COMMIT);
                tx = s.tx;
                if (!unanimous) t.equal(s.refusal?.code, 'aborted');
              }
              cases++;
              const label = `${answers.join(',')} order ${order.join('')} commit ${commitFirst ? 'first' : 'last'}`;
              if (unanimous) {
                if (tx.outcome !== 'commit') t.fail(`${label}: should commit`);
              } else if (tx.outcome !== 'abort' || committed.length > 0) {
                t.fail(`${label}: committed with a non-yes vote`);
              }
              for (const c of committed) {
                if (!c.participants.every((p) => p.vote === 'yes' || p.vote === 'read-only')) {
                  t.fail(`${label}: commit decided with a non-yes vote`);
                }
              }
            }
          }
        }
      }
    }
    t.equal(cases, 64 * 3 * 2);
  });

  t.test('a commit over a non-yes vote breaks an invariant', async (t) => {
    const tx = prepared({ a: 'yes', b: 'yes' });
    const corrupt: Transaction = {
      ...tx,
      participants: tx.participants.map((p) => (p.name === 'b' ? { ...p, vote: 'no' as const } : p)),
    };
    t.throws(() => apply(corrupt, COMMIT), InvariantError);
    const undecided: Transaction = {
      ...tx,
      participants: tx.participants.map((p) => (p.name === 'b' ? { ...p, vote: null } : p)),
    };
    t.throws(() => apply(undecided, COMMIT), InvariantError);
  });

  t.test('a decision is never rewritten', async (t) => {
    // An outcome already set on a state that would decide again.
    const tx: Transaction = { ...prepared({ a: 'yes' }), outcome: 'abort' };
    t.throws(() => apply(tx, COMMIT), InvariantError);
    t.throws(() => apply({ ...preparing(['a']), outcome: 'commit' }, RECOVER), InvariantError);
  });

  t.test('an event naming an unknown participant throws InvariantError', async (t) => {
    const tx = preparing(['a']);
    const decided = committing(['a']);
    t.throws(() => apply(tx, vote('ghost', 'yes')), InvariantError);
    t.throws(() => apply(tx, lost('ghost')), InvariantError);
    t.throws(() => apply(decided, ack('ghost')), InvariantError);
    t.throws(() => apply(decided, { type: 'heuristic', participant: 'ghost', heuristic: 'abort' }), InvariantError);
    t.throws(() => apply(decided, { type: 'delivery-failed', participant: 'ghost', error: 'x' }), InvariantError);
    t.throws(() => apply(tx, vote('ghost', 'yes')), { name: 'InvariantError', message: /ghost/ });
  });

  t.test('step never changes the transaction it is given', async (t) => {
    // Every fixture passed to apply() is deep-frozen: a mutation would throw.
    const tx = deepFreeze(preparing(['a', 'b'], { commit: true }));
    const before = JSON.stringify(tx);
    const s = step(tx, vote('a', 'yes'), NOW);
    t.not(s.tx, tx);
    t.equal(JSON.stringify(tx), before);
    t.equal(tx.participants[0]?.vote, null);
  });
});

t.test('a decided transaction carries no payloads: nobody is asked to prepare again', async (t) => {
  const withPayloads: Transaction = {
    ...active(['a', 'b']),
    participants: active(['a', 'b']).participants.map((p) => ({ ...p, payloadJson: '{"n":1}' })),
  };
  const preparing = apply(withPayloads, COMMIT).tx;
  t.same(
    preparing.participants.map((p) => p.payloadJson),
    ['{"n":1}', '{"n":1}'],
    'kept while undecided',
  );
  const committed = drive(preparing, vote('a', 'yes'), vote('b', 'yes'));
  t.same(
    committed.participants.map((p) => p.payloadJson),
    [null, null],
    'dropped with the commit decision',
  );
  const aborted = apply(drive(withPayloads, PREPARE), vote('a', 'no')).tx;
  t.same(
    aborted.participants.map((p) => p.payloadJson),
    [null, null],
    'dropped with the abort decision',
  );
});

t.test('operator actions', async (t) => {
  const failed = (participant: string, error = 'ECONNREFUSED'): Event => ({
    type: 'delivery-failed',
    participant,
    error,
  });
  const RETRY: Event = { type: 'retry' };

  t.test('an admin abort decides abort with the reason operator, forced like a client abort', async (t) => {
    const s = apply(prepared({ a: 'yes', b: 'yes' }), { type: 'abort', byOperator: true });
    t.equal(s.tx.abortReason, 'operator');
    t.same(s.effects, [FORCED, send('abort', 'a'), send('abort', 'b')]);
    const oneShot = apply(preparing(['a'], { oneShot: true }), { type: 'abort', byOperator: true });
    t.same(oneShot.effects[0], LAZY, 'lazy for a one-shot, as every one-shot abort: recovery aborts it anyway');
    const refused = apply(committing(['a']), { type: 'abort', byOperator: true });
    t.same(refused.refusal?.code, 'committed', 'refused once a commit is decided, as for a client');
  });

  t.test('retry now is refused while undecided: there is no phase two yet', async (t) => {
    for (const tx of [active(['a']), preparing(['a']), prepared({ a: 'yes' })]) {
      const s = apply(tx, RETRY);
      t.equal(s.refusal?.code, 'not-decided', tx.state);
      t.equal(s.changed, false);
      t.same(s.effects, []);
    }
  });

  t.test('retry now resends at once to every participant waiting out a backoff, attempts from zero', async (t) => {
    const tx = drive(committing(['a', 'b', 'c']), failed('a'), failed('a'), failed('b'), ack('c'));
    t.same(
      tx.participants.map((p) => p.attempts),
      [2, 1, 0],
    );
    const s = apply(tx, RETRY);
    t.equal(s.refusal, null);
    t.same(s.effects, [send('commit', 'a', 0), send('commit', 'b', 0)], 'attempt 0: no backoff delay');
    t.same(parts(s.tx), [
      part('a', { vote: 'yes', attempts: 0 }),
      part('b', { vote: 'yes', attempts: 0 }),
      part('c', { vote: 'yes', acknowledged: true }),
    ]);
    t.equal(s.tx.participants[0]?.lastError, 'ECONNREFUSED', 'the last error stays until an answer replaces it');
    const again = apply(s.tx, RETRY);
    t.equal(again.changed, false, 'a second press while the resends are out does nothing');
  });

  t.test('retry now never sends an abort ahead of a prepare still unanswered', async (t) => {
    const tx = drive(preparing(['a', 'b']), vote('a', 'yes'), ABORT, failed('a'));
    t.same(parts(tx)[1], part('b'), 'b has not answered its prepare');
    const s = apply(tx, RETRY);
    t.same(s.effects, [send('abort', 'a', 0)], 'only a, which failed its abort');
  });

  t.test('retry now on a finished transaction changes nothing', async (t) => {
    const tx = drive(committing(['a']), ack('a'));
    const s = apply(tx, RETRY);
    t.equal(s.refusal, null);
    t.equal(s.changed, false);
  });
});
