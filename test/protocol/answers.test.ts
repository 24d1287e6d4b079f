// What a caller may be told, as pure functions (src/protocol/answers.ts), on
// transactions the protocol itself reaches: a 202 only for a commit decision,
// a pending answer for anything undecided, a mixed outcome said out loud, and
// which aborts must be on disk before anyone hears of them.

import t from 'tap';
import {
  abortCallMayAnswer,
  answerStandsAfterHandover,
  commitAnswer,
  commitCallMayAnswer,
  mixedOutcome,
  prepareAnswer,
  prepareCallMayAnswer,
} from '../../src/protocol/answers.js';
import { abortIsForced, createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';

const T0 = 1_700_000_000_000;

function begin(names: string[], oneShot = false): Transaction {
  return createTransaction({
    id: 'tx_1',
    nowMs: T0,
    timeoutMs: 30_000,
    oneShot,
    participants: names.map((name) => ({ name, url: `http://${name}/tx`, database: null, payloadJson: null })),
    idempotencyKey: null,
    requestHash: null,
    metadataJson: null,
    traceParent: null,
  }).tx;
}

/** Applies events in order (each to a frozen input), returning the last transaction. */
function drive(tx: Transaction, ...events: Event[]): Transaction {
  return events.reduce((current, event) => step(Object.freeze(current), event, T0 + 1).tx, tx);
}

const yes = (participant: string): Event => ({ type: 'vote', participant, vote: 'yes' });
const no = (participant: string): Event => ({ type: 'vote', participant, vote: 'no' });
const failed = (participant: string): Event => ({ type: 'delivery-failed', participant, error: 'refused' });

t.test('commitAnswer: 202 only for a commit decision; undecided is never promised anything', async (t) => {
  const preparing = drive(begin(['a', 'b']), { type: 'commit' });
  t.equal(commitAnswer(preparing, false), 'undecided', 'still preparing');
  t.equal(commitAnswer(drive(preparing, yes('a')), false), 'undecided', 'one vote in');
  const committing = drive(preparing, yes('a'), yes('b'));
  t.equal(committing.outcome, 'commit');
  t.equal(commitAnswer(committing, false), 'commit-decided');
  const committed = drive(
    committing,
    { type: 'acknowledged', participant: 'a' },
    { type: 'acknowledged', participant: 'b' },
  );
  t.equal(commitAnswer(committed, false), 'committed');
  t.equal(commitAnswer(drive(preparing, no('a')), false), 'aborted');
  t.equal(commitAnswer(committed, true), 'aborted', 'a refusal is an abort whatever the state');
  t.equal(commitAnswer(begin(['a']), false), 'undecided', 'active');
});

t.test('prepareAnswer: prepared, aborted, or undecided', async (t) => {
  const preparing = drive(begin(['a', 'b']), { type: 'prepare' });
  t.equal(prepareAnswer(preparing, false), 'undecided');
  t.equal(prepareAnswer(drive(preparing, yes('a'), yes('b')), false), 'prepared');
  t.equal(prepareAnswer(drive(preparing, no('b')), false), 'aborted');
  const committing = drive(begin(['a']), { type: 'commit' }, yes('a'));
  t.equal(prepareAnswer(committing, false), 'prepared', 'a decided commit was prepared');
});

t.test('when a waiting call may answer', async (t) => {
  const preparing = drive(begin(['a', 'b']), { type: 'commit' });
  t.notOk(commitCallMayAnswer(preparing));
  t.notOk(prepareCallMayAnswer(preparing));
  t.notOk(abortCallMayAnswer(preparing));
  const committing = drive(preparing, yes('a'), yes('b'));
  t.notOk(commitCallMayAnswer(committing), 'decided, but nobody tried yet');
  t.notOk(commitCallMayAnswer(drive(committing, { type: 'acknowledged', participant: 'a' })), 'b not tried');
  t.ok(commitCallMayAnswer(drive(committing, { type: 'acknowledged', participant: 'a' }, failed('b'))), 'all tried');
  t.ok(prepareCallMayAnswer(committing));
  t.ok(abortCallMayAnswer(committing));
  const aborted = drive(preparing, no('a'));
  t.ok(commitCallMayAnswer(aborted));
  t.ok(prepareCallMayAnswer(aborted));
  t.ok(prepareCallMayAnswer(drive(begin(['a']), { type: 'prepare' }, yes('a'))), 'prepared');
});

t.test('mixedOutcome: only a heuristic contrary to the outcome', async (t) => {
  const committing = drive(begin(['a', 'b']), { type: 'commit' }, yes('a'), yes('b'));
  t.notOk(mixedOutcome(committing));
  const rogue = drive(committing, { type: 'heuristic', participant: 'a', heuristic: 'abort' });
  t.ok(mixedOutcome(rogue));
  const aborting = drive(begin(['a']), { type: 'prepare' }, yes('a'), { type: 'abort' });
  t.ok(mixedOutcome(drive(aborting, { type: 'heuristic', participant: 'a', heuristic: 'commit' })));
  t.notOk(mixedOutcome(begin(['a'])), 'undecided is never mixed');
});

t.test('abortIsForced: lazy only where recovery reaches abort whatever it finds and whatever the clock', async (t) => {
  const explicit = begin(['a']);
  const oneShot = begin(['a'], true);
  for (const reason of ['client', 'vote', 'deadline'] as const) {
    t.ok(abortIsForced(explicit, reason), `explicit, ${reason}: forced`);
    t.notOk(abortIsForced(oneShot, reason), `one-shot, ${reason}: lazy`);
  }
  t.notOk(abortIsForced(explicit, 'recovery'), 'decided by recovery itself: lazy');
  // And the protocol emits what the rule says, before any abort message.
  const expired = step(drive(explicit, { type: 'prepare' }, yes('a')), { type: 'deadline' }, T0 + 30_000);
  t.same(expired.effects[0], { type: 'persist', forced: true });
  t.same(expired.effects[1], { type: 'send', message: 'abort', participant: 'a', attempt: 0 });
});

t.test(
  'answerStandsAfterHandover: only a decision, of either kind, is answered by the instance that let go',
  async (t) => {
    const explicit = begin(['a', 'b']);
    t.notOk(answerStandsAfterHandover(explicit), 'active: the new owner may still commit it');
    const preparing = drive(explicit, { type: 'commit' }, yes('a'));
    t.notOk(answerStandsAfterHandover(preparing), 'one vote in: undecided');
    const committing = drive(preparing, yes('b'));
    t.ok(answerStandsAfterHandover(committing), 'commit decided (forced): stands');
    const aborted = drive(preparing, no('b'));
    t.ok(answerStandsAfterHandover(aborted), 'abort decided (forced for an explicit one): stands');
    const oneShotAborted = drive(begin(['a', 'b'], true), { type: 'commit', withBegin: true }, no('a'));
    t.equal(oneShotAborted.outcome, 'abort');
    t.ok(answerStandsAfterHandover(oneShotAborted), "a one-shot's lazy abort: any recovery aborts it too");
  },
);
