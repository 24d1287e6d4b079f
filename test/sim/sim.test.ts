// The deterministic simulator in the test suite: a few hundred seeds must
// hold every invariant, and bugs planted on purpose must be caught within a
// bounded number of seeds (a simulator that finds nothing proves nothing).

import t from 'tap';
import { step } from '../../src/protocol/transitions.js';
import type { Event, Step, Transaction } from '../../src/protocol/types.js';
import type { Invariant } from './checks.js';
import { type SimOptions, simulate } from './simulator.js';

const SEEDS = Number(process.env.SIM_SEEDS ?? 300);

t.test(`${SEEDS} seeds hold every invariant`, async (t) => {
  let transactions = 0;
  let committed = 0;
  let aborted = 0;
  let crashes = 0;
  let takeovers = 0;
  const failed: string[] = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await simulate({ seed });
    transactions += r.transactions;
    committed += r.committed;
    aborted += r.aborted;
    crashes += r.coordinatorCrashes;
    takeovers += r.takeovers;
    for (const v of r.violations)
      failed.push(`seed ${seed}: ${v.invariant}: ${v.detail} (npm run sim -- --seed ${seed})`);
  }
  t.same(failed, [], 'no violations');
  // The runs must have exercised what they claim to.
  t.ok(committed > SEEDS, `commits happened: ${committed}`);
  t.ok(aborted > SEEDS, `aborts happened: ${aborted}`);
  t.ok(crashes > SEEDS, `coordinator crashes happened: ${crashes}`);
  t.ok(takeovers > SEEDS / 10, `takeovers with the old owner still running happened: ${takeovers}`);
  t.equal(committed + aborted, transactions, 'every begun transaction ended with an outcome');
});

t.test('a seed replays exactly: the same trace, the same violations, the same counts', async (t) => {
  for (const options of [{ seed: 4242 }, { seed: 37, faultMs: 8000 }]) {
    const a = await simulate(options);
    const b = await simulate(options);
    t.ok(a.trace.length > 0, `seed ${options.seed} began transactions`);
    t.same(b, a, `seed ${options.seed} replays`);
  }
  // And a planted bug's violations replay too, not only a clean run.
  const lazyCommit = wrap((_tx, _event, r) =>
    r.tx.outcome === 'commit'
      ? { ...r, effects: r.effects.map((e) => (e.type === 'persist' ? { ...e, forced: false } : e)) }
      : r,
  );
  const first = await simulate({ seed: 1, protocolStep: lazyCommit });
  t.ok(first.violations.length > 0, 'the planted bug is seen at seed 1');
  t.same(await simulate({ seed: 1, protocolStep: lazyCommit }), first);
});

/** Runs seeds until one breaks `invariant`; returns the seed, or null within the bound. */
async function firstCatch(
  options: Omit<SimOptions, 'seed'>,
  invariants: Invariant | Invariant[],
  bound: number,
): Promise<number | null> {
  const wanted = new Set(Array.isArray(invariants) ? invariants : [invariants]);
  for (let seed = 1; seed <= bound; seed++) {
    const r = await simulate({ ...options, seed });
    if (r.violations.some((v) => wanted.has(v.invariant))) return seed;
  }
  return null;
}

function wrap(f: (tx: Transaction, event: Event, result: Step) => Step): typeof step {
  return (tx, event, nowMs) => f(tx, event, step(tx, event, nowMs));
}

t.test('planted: the log acknowledges a forced write before it is flushed', async (t) => {
  const seed = await firstCatch(
    { logBugs: { ackBeforeFlush: true } },
    'no commit message leaves before the commit decision is durable',
    50,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: the commit decision is written lazily', async (t) => {
  const lazyCommit = wrap((_tx, _event, r) =>
    r.tx.outcome === 'commit'
      ? { ...r, effects: r.effects.map((e) => (e.type === 'persist' ? { ...e, forced: false } : e)) }
      : r,
  );
  // Caught twice over: the runtime asserts the decision is durable before
  // it sends, and the simulated participants check the log when commit arrives.
  const seed = await firstCatch(
    { protocolStep: lazyCommit },
    [
      'no commit message leaves before the commit decision is durable',
      'the coordinator asserts its own invariants',
    ] as Invariant[],
    50,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: compaction forgets transactions not yet acknowledged', async (t) => {
  const seed = await firstCatch(
    { logBugs: { forgetUnfinished: true } },
    'a transaction is forgotten only after every participant acknowledged',
    50,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: recovery leaves a preparing transaction alone', async (t) => {
  const stuck = wrap((tx, event, r) =>
    event.type === 'recover' && tx.state === 'preparing' ? { ...r, tx, effects: [] } : r,
  );
  const seed = await firstCatch(
    { protocolStep: stuck },
    'liveness: when faults stop, every transaction finishes and no participant stays prepared',
    200,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test(
  'planted: a second deployment on the same database server under the same identity (issue 24, item 2)',
  async (t) => {
    // Its orphan scan takes the simulated deployment's prepared participants for
    // unknown ones of its own and rolls them back: what happens when the names
    // do not tell deployments apart.
    const seed = await firstCatch(
      { runtimeBugs: { sharedDeploymentId: true } },
      ['commit goes only to participants that voted yes', 'TCConsistent: no participant commits while another aborts'],
      50,
    );
    t.not(seed, null, `caught at seed ${seed}`);
  },
);

t.test('planted: a lost vote is taken for a yes', async (t) => {
  const optimistic = wrap((tx, event, r) =>
    event.type === 'vote-lost' ? step(tx, { type: 'vote', participant: event.participant, vote: 'yes' }, 0) : r,
  );
  const seed = await firstCatch({ protocolStep: optimistic }, 'commit goes only to participants that voted yes', 200);
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: a call that waited past its bound answers 202 with nothing decided', async (t) => {
  // Found by a probe against the service (issue 14): calls queued behind slow
  // participants, or a slow disk, outlast the wait and the caller was told
  // 202. The simulator's slow flushes and queued calls reach the same state.
  const seed = await firstCatch(
    { runtimeBugs: { undecidedAnsweredAccepted: true } },
    'what a client was told survives: an acknowledged outcome is the outcome',
    400,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: a deadline abort is written lazily (a clock stepped back revives it)', async (t) => {
  const lazyDeadline = wrap((tx, _event, r) =>
    tx.outcome === null && r.tx.abortReason === 'deadline'
      ? { ...r, effects: r.effects.map((e) => (e.type === 'persist' ? { ...e, forced: false } : e)) }
      : r,
  );
  // Longer fault phases, so that more deadlines pass while crashes and clock
  // steps still happen.
  const seed = await firstCatch(
    { protocolStep: lazyDeadline, faultMs: 8000 },
    [
      'commit goes only to participants that voted yes',
      'TCConsistent: no participant commits while another aborts',
      'an outcome, once decided, never changes',
      'what a client was told survives: an acknowledged outcome is the outcome',
    ] as Invariant[],
    200,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});

t.test('planted: no fence (an instance that slept through a takeover still writes what counts)', async (t) => {
  const seed = await firstCatch(
    { logBugs: { unfenced: true } },
    [
      'an outcome, once decided, never changes',
      'what a client was told survives: an acknowledged outcome is the outcome',
      'commit goes only to participants that voted yes',
      'TCConsistent: no participant commits while another aborts',
    ],
    100,
  );
  t.not(seed, null, `caught at seed ${seed}`);
});
