// What every DecisionLog promises (src/log/decision-log.ts), as one suite
// any implementation runs: the SQLite log commitd uses and the simulator's
// log, so a simulation that passes says something about the real thing.
// Each case writes through the real protocol's transitions, as the
// coordinator would, and reads back through the interface only.

import type { Test } from 'tap';
import type { DecisionLog } from '../../src/log/decision-log.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';

export interface LogUnderTest {
  readonly log: DecisionLog;
  /**
   * Lets the log's own time pass until what was written can be on disk:
   * nothing for a log that flushes by itself, the scheduled events for the
   * simulator's log.
   */
  readonly advance: () => Promise<void>;
  /** Asserts, after each case, what the implementation itself noticed (errors it reported, its own checks). */
  readonly verify: (t: Test) => void;
}

/** Opens a fresh, empty log for one case; the factory closes it at the test's teardown. */
export type OpenLog = (t: Test) => LogUnderTest | Promise<LogUnderTest>;

const T0 = 1_800_000_000_000;
const NAMES = ['orders', 'payments'] as const;
/** Kept with transactions begun with an idempotency key; the others have none: both kinds read back as written. */
const TRACE_PARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function begun(id: string, key: string | null = null): Transaction {
  return createTransaction({
    id,
    nowMs: T0,
    timeoutMs: 60_000,
    oneShot: false,
    participants: NAMES.map((name) => ({
      name,
      url: `http://${name}.test/tx`,
      database: null,
      payloadJson: `{"for":"${name}"}`,
    })),
    idempotencyKey: key,
    requestHash: key === null ? null : `hash-of-${key}`,
    metadataJson: '{"source":"contract"}',
    traceParent: key === null ? null : TRACE_PARENT,
    // The beginner's token id, kept as the traceparent is.
    beganBy: key === null ? null : 'a1b2c3d4e5f6',
  }).tx;
}

function apply(tx: Transaction, events: readonly Event[], nowMs: number): Transaction {
  return events.reduce((current, event) => step(current, event, nowMs).tx, tx);
}

/** Decided commit, no participant has acknowledged yet: `committing`. */
function committing(tx: Transaction): Transaction {
  return apply(
    tx,
    [{ type: 'commit' }, ...NAMES.map((participant) => ({ type: 'vote', participant, vote: 'yes' }) as const)],
    T0 + 10,
  );
}

/** Every participant acknowledged at `atMs`: `committed`, finished. */
function finished(tx: Transaction, atMs: number): Transaction {
  return apply(
    committing(tx),
    NAMES.map((participant) => ({ type: 'acknowledged', participant }) as const),
    atMs,
  );
}

/** What a log keeps of a snapshot: none of the state that lives only in memory. */
function durablePart(tx: Transaction): Transaction {
  return {
    ...tx,
    commitRequested: false,
    participants: tx.participants.map((p) => ({ ...p, payloadJson: null, attempts: 0, lastError: null })),
  };
}

function withoutPayloads(tx: Transaction | undefined): Transaction | undefined {
  return tx && { ...tx, participants: tx.participants.map((p) => ({ ...p, payloadJson: null })) };
}

async function forced(u: LogUnderTest, tx: Transaction): Promise<void> {
  const written = u.log.writeForced(tx);
  await u.advance();
  await written;
}

export function decisionLogContract(t: Test, open: OpenLog): void {
  const check = (name: string, body: (t: Test, u: LogUnderTest) => Promise<void>) =>
    t.test(name, async (t) => {
      const u = await open(t);
      await body(t, u);
      u.verify(t);
    });

  check('a forced write is readable once it resolves, as written', async (t, u) => {
    const tx = begun('tx_001', 'key-1');
    await forced(u, tx);
    t.same(withoutPayloads(await u.log.get(tx.id)), durablePart(tx));
    t.equal(await u.log.get('tx_unknown'), undefined, 'an id never written is unknown');
  });

  check("a database participant's vote keeps what it saw (preparedId); others keep null", async (t, u) => {
    const tx = createTransaction({
      id: 'tx_db1',
      nowMs: T0,
      timeoutMs: 60_000,
      oneShot: false,
      participants: [
        { name: 'debit', url: null, database: 'orders-db', payloadJson: null },
        { name: 'credit', url: null, database: 'stock-db', payloadJson: null },
      ],
      idempotencyKey: null,
      requestHash: null,
      metadataJson: null,
      traceParent: null,
    }).tx;
    const decided = apply(
      tx,
      [
        { type: 'commit' },
        { type: 'vote', participant: 'debit', vote: 'yes', preparedId: '12884901890' },
        { type: 'vote', participant: 'credit', vote: 'yes' },
      ],
      T0 + 10,
    );
    await forced(u, decided);
    const read = await u.log.get(tx.id);
    t.same(
      read?.participants.map((p) => [p.database, p.preparedId]),
      [
        ['orders-db', '12884901890'],
        ['stock-db', null],
      ],
    );
    t.same(read, durablePart(decided));
  });

  check('the deployment identity: the first one proposed is kept, whatever is proposed later', async (t, u) => {
    t.equal(await u.log.claimDeploymentId('first-1'), 'first-1');
    t.equal(await u.log.claimDeploymentId('second-2'), 'first-1', 'the kept one stands');
  });

  check('the newest snapshot of a transaction is the one kept', async (t, u) => {
    const tx = begun('tx_001');
    await forced(u, tx);
    const later = committing(tx);
    await forced(u, later);
    t.same(withoutPayloads(await u.log.get(tx.id)), durablePart(later));
    const last = finished(tx, T0 + 20);
    let written = false;
    u.log.writeLazy(last, () => {
      written = true;
    });
    await u.log.flush();
    t.ok(written, 'a lazy record has been written once flush() returns, and its onWritten ran');
    t.same(withoutPayloads(await u.log.get(tx.id)), durablePart(last));
  });

  check('state that lives only in memory is not kept', async (t, u) => {
    const tx = begun('tx_001');
    await forced(u, tx);
    const failing = apply(
      committing(tx),
      [{ type: 'delivery-failed', participant: 'orders', error: 'commit answered HTTP 503' }],
      T0 + 30,
    );
    t.equal(failing.commitRequested, true, 'the snapshot has a commit request');
    t.equal(failing.participants[0]?.attempts, 1, 'and a failed attempt');
    await forced(u, failing);
    const stored = await u.log.get(tx.id);
    t.equal(stored?.commitRequested, false);
    t.same(
      stored?.participants.map((p) => [p.attempts, p.lastError]),
      [
        [0, null],
        [0, null],
      ],
    );
  });

  check('an idempotency key finds its transaction', async (t, u) => {
    await forced(u, begun('tx_001', 'key-1'));
    await forced(u, begun('tx_002', 'key-2'));
    t.equal((await u.log.findByIdempotencyKey('key-2'))?.id, 'tx_002');
    t.equal((await u.log.findByIdempotencyKey('key-1'))?.id, 'tx_001');
    t.equal(await u.log.findByIdempotencyKey('key-3'), undefined);
  });

  check('list: newest first, paged by the id of the last one, filtered by state', async (t, u) => {
    const ids = ['tx_001', 'tx_002', 'tx_003', 'tx_004', 'tx_005'];
    for (const id of ids) await forced(u, begun(id));
    for (const id of ['tx_002', 'tx_004']) await forced(u, committing(begun(id)));
    const pages: string[][] = [];
    const cursors: Array<string | null> = [];
    let after: string | null = null;
    for (let n = 0; n < ids.length + 1; n++) {
      const page = await u.log.list({ state: null, limit: 2, after });
      pages.push(page.transactions.map((tx) => tx.id));
      cursors.push(page.next);
      after = page.next;
      if (after === null) break;
    }
    t.same(pages, [['tx_005', 'tx_004'], ['tx_003', 'tx_002'], ['tx_001']]);
    t.same(cursors, ['tx_004', 'tx_002', null]);
    const byState = async (state: Transaction['state']) =>
      (await u.log.list({ state, limit: 10, after: null })).transactions.map((tx) => [tx.id, tx.state]);
    t.same(await byState('committing'), [
      ['tx_004', 'committing'],
      ['tx_002', 'committing'],
    ]);
    t.same(await byState('active'), [
      ['tx_005', 'active'],
      ['tx_003', 'active'],
      ['tx_001', 'active'],
    ]);
    t.same(
      (await u.log.list({ state: 'committing', limit: 1, after: 'tx_004' })).transactions.map((tx) => tx.id),
      ['tx_002'],
    );
  });

  check(
    'loadUnfinished: every transaction not finished, oldest first, payloads only where prepares may follow',
    async (t, u) => {
      for (const id of ['tx_003', 'tx_001', 'tx_002', 'tx_004']) await forced(u, begun(id));
      await forced(u, committing(begun('tx_003')));
      await forced(u, finished(begun('tx_002'), T0 + 20));
      const loaded = await u.log.loadUnfinished();
      t.same(
        loaded.map((tx) => [tx.id, tx.state]),
        [
          ['tx_001', 'active'],
          ['tx_003', 'committing'],
          ['tx_004', 'active'],
        ],
      );
      t.same(
        loaded.map((tx) => tx.participants.map((p) => p.payloadJson)),
        loaded.map((tx) => NAMES.map((name) => (tx.state === 'active' ? `{"for":"${name}"}` : null))),
        'an active transaction comes back with its payloads, for the prepares it may still send; the others without',
      );
    },
  );

  check('compact forgets only what finished before the cutoff, at most maxRows at a time', async (t, u) => {
    const early = ['tx_001', 'tx_002', 'tx_003'];
    for (const id of early) {
      await forced(u, begun(id, `key-${id}`));
      await forced(u, finished(begun(id, `key-${id}`), T0 + 100));
    }
    await forced(u, begun('tx_004'));
    await forced(u, finished(begun('tx_004'), T0 + 500));
    await forced(u, begun('tx_005'));
    await forced(u, committing(begun('tx_005')));

    // Keys of transactions that finished from T0 on are kept.
    const keysKeptFrom = T0;
    t.equal(await u.log.compact(T0 + 100, keysKeptFrom, 10), 0, 'finished at the cutoff itself: kept');
    t.equal(await u.log.compact(T0 + 101, keysKeptFrom, 2), 2, 'at most maxRows');
    t.equal(await u.log.compact(T0 + 101, keysKeptFrom, 10), 1, 'the rest of them');
    t.equal(await u.log.compact(T0 + 101, keysKeptFrom, 10), 0, 'nothing left to forget');
    for (const id of early) {
      t.equal(await u.log.get(id), undefined, `${id} is forgotten`);
      const kept = await u.log.findByIdempotencyKey(`key-${id}`);
      t.same(
        kept && [kept.id, kept.state, kept.outcome],
        [id, 'committed', 'commit'],
        'its idempotency key still finds what it ran as',
      );
    }
    t.equal((await u.log.get('tx_004'))?.state, 'committed', 'finished after the cutoff: kept');
    t.equal((await u.log.get('tx_005'))?.state, 'committing', 'unfinished: kept');
    t.same(
      (await u.log.list({ state: null, limit: 10, after: null })).transactions.map((tx) => tx.id),
      ['tx_005', 'tx_004'],
      'the list shows only what is kept',
    );

    // Keys of what finished before the key cutoff go too, at most maxRows at a time.
    const keyKnown = async () => {
      let known = 0;
      for (const id of early) if ((await u.log.findByIdempotencyKey(`key-${id}`)) !== undefined) known++;
      return known;
    };
    t.equal(await u.log.compact(T0 + 101, T0 + 101, 2), 0, 'no transaction left to forget');
    t.equal(await keyKnown(), 1, 'two of the three keys expired');
    await u.log.compact(T0 + 101, T0 + 101, 2);
    t.equal(await keyKnown(), 0, 'then the last one');

    t.equal(await u.log.compact(T0 + 1_000_000, T0, 10), 1, 'a later cutoff forgets the later one');
    t.equal((await u.log.get('tx_005'))?.state, 'committing', 'and never an unfinished one');
  });

  check(
    'history: appended in order, readable before and after a flush, kept only with its transaction',
    async (t, u) => {
      const tx = begun('tx_001');
      await forced(u, tx);
      const by = { role: 'client', tokenId: 'abc123', address: '127.0.0.1' };
      u.log.appendHistory(tx.id, [
        { type: 'begun', by, oneShot: false, participants: [...NAMES], atMs: T0 },
        { type: 'requested', action: 'prepare', by, atMs: T0 + 1 },
      ]);
      t.same(
        (await u.log.history(tx.id)).map((e) => e.type),
        ['begun', 'requested'],
        'queued entries are read back before any flush',
      );
      await u.log.flush();
      u.log.appendHistory(tx.id, [{ type: 'voted', participant: 'orders', vote: 'yes', latencyMs: 3, atMs: T0 + 4 }]);
      u.log.appendHistory('tx_002', [{ type: 'finished', atMs: T0 + 5 }]);
      await u.log.flush();
      u.log.appendHistory(tx.id, []);
      const history = await u.log.history(tx.id);
      t.same(
        history.map((e) => [e.type, e.atMs]),
        [
          ['begun', T0],
          ['requested', T0 + 1],
          ['voted', T0 + 4],
        ],
        'in the order appended, across flushes',
      );
      t.same(history[0], { type: 'begun', by, oneShot: false, participants: [...NAMES], atMs: T0 }, 'whole entries');
      t.same(await u.log.history('tx_002'), [], 'entries of a transaction the log does not have are not kept');
      t.same(await u.log.history('tx_unknown'), [], 'an unknown transaction has no history');

      await forced(u, finished(tx, T0 + 20));
      await u.log.flush();
      t.equal(await u.log.compact(T0 + 21, T0 + 21, 10), 1);
      t.same(await u.log.history(tx.id), [], 'compacted with its transaction');
    },
  );

  check('a contradicting heuristic is kept unresolved until an operator resolves it', async (t, u) => {
    const tx = begun('tx_001');
    await forced(u, tx);
    const agreed = apply(committing(tx), [{ type: 'heuristic', participant: 'orders', heuristic: 'commit' }], T0 + 20);
    await forced(u, agreed);
    t.equal(await u.log.unresolvedHeuristics(), 0, 'a heuristic that agrees with the decision needs nobody');
    const mixed = apply(agreed, [{ type: 'heuristic', participant: 'payments', heuristic: 'abort' }], T0 + 30);
    t.equal(mixed.state, 'committed');
    await forced(u, mixed);
    await forced(u, mixed);
    t.equal(await u.log.unresolvedHeuristics(), 1, 'one contradicting heuristic, however often written');
    const other = begun('tx_002');
    await forced(u, finished(other, T0 + 30));
    t.same(
      (await u.log.list({ state: null, limit: 10, after: null, heuristicUnresolved: true })).transactions.map(
        (x) => x.id,
      ),
      ['tx_001'],
      'the list finds it',
    );
    t.equal(await u.log.compact(T0 + 1000, T0, 10), 1, 'compaction forgets the other one only');
    t.equal((await u.log.get('tx_001'))?.state, 'committed', 'an unresolved heuristic keeps its transaction');
    t.same(await u.log.resolutions('tx_001'), [], 'nothing resolved yet');
    t.same(
      await u.log.resolveHeuristics('tx_001', 'orders', { atMs: T0 + 40, note: 'n', by: null }),
      [],
      'orders has none',
    );
    const by = { role: 'admin', tokenId: 'ops', address: '10.0.0.1' };
    t.same(await u.log.resolveHeuristics('tx_001', null, { atMs: T0 + 50, note: 'refunded by hand', by }), [
      'payments',
    ]);
    t.same(await u.log.resolutions('tx_001'), [
      { participant: 'payments', atMs: T0 + 50, note: 'refunded by hand', by },
    ]);
    t.equal(await u.log.unresolvedHeuristics(), 0);
    t.same(
      await u.log.resolveHeuristics('tx_001', null, { atMs: T0 + 60, note: 'again', by }),
      [],
      'resolved once only',
    );
    t.same(
      (await u.log.list({ state: null, limit: 10, after: null, heuristicUnresolved: true })).transactions,
      [],
      'the list no longer finds it',
    );
    t.equal(await u.log.compact(T0 + 1000, T0, 10), 1, 'once resolved it is compacted like any other');
    t.same(await u.log.resolutions('tx_001'), [], 'with its resolutions');
  });

  check('list filters: by participant name and by age', async (t, u) => {
    const first = begun('tx_001');
    await forced(u, first);
    const later = { ...begun('tx_002'), createdAtMs: T0 + 500, participants: [begun('tx_x').participants[0]] };
    await forced(u, later as Transaction);
    const ids = async (q: Partial<Parameters<typeof u.log.list>[0]>) =>
      (await u.log.list({ state: null, limit: 10, after: null, ...q })).transactions.map((x) => x.id);
    t.same(await ids({ participant: 'payments' }), ['tx_001'], 'only tx_001 has payments');
    t.same(await ids({ participant: 'orders' }), ['tx_002', 'tx_001']);
    t.same(await ids({ participant: 'nobody' }), []);
    t.same(await ids({ createdBeforeMs: T0 + 500 }), ['tx_001'], 'created before the cutoff, not at it');
    t.same(await ids({ createdBeforeMs: T0 + 501, participant: 'orders' }), ['tx_002', 'tx_001'], 'filters combine');
  });

  keptOutcomeContract(t, open);
}

/** Aborted by its client before any prepare (nobody to tell): `aborted`, finished at `atMs`. */
function abortedAndFinished(tx: Transaction, atMs: number): Transaction {
  return apply(tx, [{ type: 'abort' }], atMs);
}

/**
 * What compaction keeps of an outcome (issue 24, item 6): a committed
 * transaction's id as long as idempotency keys are kept, then a horizon
 * below which an unknown id is "forgotten", never presumed aborted.
 */
export function keptOutcomeContract(t: Test, open: OpenLog): void {
  t.test('compaction keeps a committed id as long as keys, then forgets it below a horizon', async (t) => {
    const u = await open(t);
    // Ids sort as created; these as real ids do.
    const committedEarly = 'tx_001';
    const aborted = 'tx_002';
    const committedLate = 'tx_003';
    await forced(u, begun(committedEarly));
    await forced(u, finished(begun(committedEarly), T0 + 100));
    const abortedTx = abortedAndFinished(begun(aborted), T0 + 100);
    t.equal(abortedTx.finishedAtMs, T0 + 100, 'the aborted one is finished');
    await forced(u, begun(aborted));
    await forced(u, abortedTx);
    await forced(u, begun(committedLate));
    await forced(u, finished(begun(committedLate), T0 + 300));

    t.equal(await u.log.keptOutcome('tx_009'), null, 'nothing forgotten yet: an unknown id is unknown');
    t.equal(await u.log.compact(T0 + 1000, T0, 10), 3, 'all three compacted');
    t.equal(await u.log.get(committedEarly), undefined, 'its details are gone');
    t.equal(await u.log.keptOutcome(committedEarly), 'commit', 'a compacted committed one: commit');
    t.equal(await u.log.keptOutcome(committedLate), 'commit');
    t.equal(await u.log.keptOutcome(aborted), null, 'a compacted aborted one: nothing kept (it did not commit)');

    // Outcomes of what finished before the key cutoff expire, at most maxRows at a time.
    await u.log.compact(T0 + 1000, T0 + 200, 10);
    t.equal(await u.log.keptOutcome(committedEarly), 'forgotten', 'expired: forgotten, not abort');
    t.equal(await u.log.keptOutcome(committedLate), 'commit', 'finished after the key cutoff: still commit');
    t.equal(await u.log.keptOutcome('tx_000'), 'forgotten', 'an older unknown id may have been one: forgotten');
    t.equal(await u.log.keptOutcome(aborted), null, 'a later id than every expired one: never committed');
    await u.log.compact(T0 + 1000, T0 + 400, 1);
    t.equal(await u.log.keptOutcome(committedLate), 'forgotten', 'the later one expires in turn');
    t.equal(await u.log.keptOutcome(aborted), 'forgotten', 'and the horizon moves over the ids before it');
    t.equal(await u.log.keptOutcome('tx_004'), null, 'an id after the horizon is unknown');
    u.verify(t);
  });

  t.test('a committed one compacted after the keys retention already passed still moves the horizon', async (t) => {
    const u = await open(t);
    await forced(u, begun('tx_001'));
    await forced(u, finished(begun('tx_001'), T0 + 100));
    await u.log.compact(T0 + 1000, T0 + 500, 10);
    await u.log.compact(T0 + 1000, T0 + 500, 10);
    t.equal(await u.log.get('tx_001'), undefined);
    t.equal(await u.log.keptOutcome('tx_001'), 'forgotten', 'never presumed aborted');
    u.verify(t);
  });
}
