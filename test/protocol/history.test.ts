// History as a pure function of a step: what each step says happened, with
// frozen inputs and no clock.

import t from 'tap';
import { attemptIsRecorded, entryOutlivesCap, historyOfStep } from '../../src/protocol/history.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';

const T0 = 1_700_000_000_000;

function begun(names: readonly string[], oneShot = false): Transaction {
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

/** The step and what it records, from a frozen transaction. */
function facts(tx: Transaction, event: Event, latencyMs?: number) {
  const frozen = Object.freeze(tx);
  const result = step(frozen, event, T0 + 100);
  return { result, facts: historyOfStep(frozen, event, result, latencyMs) };
}

function drive(tx: Transaction, ...events: Event[]): Transaction {
  return events.reduce((current, e) => step(current, e, T0 + 50).tx, tx);
}

t.test('phase one: votes with their latency, the decision and its reason', async (t) => {
  const commit = facts(begun(['a', 'b']), { type: 'commit' });
  t.same(commit.facts, [], 'a message sent is no entry: its answer is, with how long it took');
  const first = facts(commit.result.tx, { type: 'vote', participant: 'a', vote: 'yes' }, 12.4);
  t.same(first.facts, [{ type: 'voted', participant: 'a', vote: 'yes', latencyMs: 12 }], 'latency in whole ms');
  const last = facts(first.result.tx, { type: 'vote', participant: 'b', vote: 'yes' }, 3);
  t.same(last.facts, [
    { type: 'voted', participant: 'b', vote: 'yes', latencyMs: 3 },
    { type: 'decided', outcome: 'commit', reason: 'all-voted-yes' },
  ]);
  const no = facts(commit.result.tx, { type: 'vote', participant: 'a', vote: 'no', reason: 'out of stock' }, 5);
  t.same(no.facts.slice(0, 2), [
    { type: 'voted', participant: 'a', vote: 'no', reason: 'out of stock', latencyMs: 5 },
    { type: 'decided', outcome: 'abort', reason: 'vote' },
  ]);
  const lost = facts(commit.result.tx, { type: 'vote-lost', participant: 'b', reason: 'timeout' });
  t.same(lost.facts[0], { type: 'vote-lost', participant: 'b', reason: 'timeout' }, 'no latency when none is given');
});

t.test('phase two: failures with their attempt and error, acknowledgements, heuristics, the end', async (t) => {
  const committing = drive(
    begun(['a', 'b']),
    { type: 'commit' },
    { type: 'vote', participant: 'a', vote: 'yes' },
    { type: 'vote', participant: 'b', vote: 'yes' },
  );
  const failed = facts(committing, { type: 'delivery-failed', participant: 'a', error: 'HTTP 503' }, 40);
  t.same(failed.facts, [
    { type: 'delivery-failed', participant: 'a', message: 'commit', attempt: 1, error: 'HTTP 503', latencyMs: 40 },
  ]);
  const acked = facts(failed.result.tx, { type: 'acknowledged', participant: 'a' }, 2);
  t.same(acked.facts, [{ type: 'acknowledged', participant: 'a', message: 'commit', latencyMs: 2 }]);
  const heuristic = facts(acked.result.tx, { type: 'heuristic', participant: 'b', heuristic: 'abort' });
  t.same(heuristic.facts, [{ type: 'heuristic', participant: 'b', heuristic: 'abort' }, { type: 'finished' }]);
  const duplicate = facts(acked.result.tx, { type: 'acknowledged', participant: 'a' });
  t.same(duplicate.facts, [], 'a step that changed nothing records nothing');
});

t.test('an unreachable participant leaves a bounded trail: attempts 1-8, then powers of two', async (t) => {
  const recorded = [];
  for (let attempt = 1; attempt <= 1000; attempt++) if (attemptIsRecorded(attempt)) recorded.push(attempt);
  t.same(recorded, [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512]);
  let tx = drive(begun(['a']), { type: 'commit' }, { type: 'vote', participant: 'a', vote: 'yes' });
  let entries = 0;
  for (let i = 0; i < 100; i++) {
    const f = facts(tx, { type: 'delivery-failed', participant: 'a', error: 'down' });
    entries += f.facts.length;
    tx = f.result.tx;
  }
  t.equal(entries, 11, '100 failures, 11 entries: attempts 1-8, 16, 32 and 64');
  t.equal(tx.participants[0]?.attempts, 100, 'the participant still counts every attempt');
});

t.test('recovery, enlistment, operator actions', async (t) => {
  const recovered = facts(drive(begun(['a']), { type: 'prepare' }), { type: 'recover' });
  t.same(recovered.facts.slice(0, 2), [
    { type: 'recovered', state: 'preparing' },
    { type: 'decided', outcome: 'abort', reason: 'recovery' },
  ]);
  const enlisted = facts(begun([]), {
    type: 'enlist',
    participant: { name: 'c', url: 'http://c/tx', database: null, payloadJson: null },
  });
  t.same(enlisted.facts, [{ type: 'enlisted', participant: 'c' }]);
  const operator = facts(drive(begun(['a']), { type: 'prepare' }), { type: 'abort', byOperator: true });
  t.same(operator.facts[0], { type: 'decided', outcome: 'abort', reason: 'operator' });
  t.ok(entryOutlivesCap({ type: 'decided', outcome: 'abort', reason: 'operator' }));
  t.ok(entryOutlivesCap({ type: 'finished' }));
  t.notOk(entryOutlivesCap({ type: 'voted', participant: 'a', vote: 'yes' }));
});
