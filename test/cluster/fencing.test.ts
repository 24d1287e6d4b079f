// The fence, tried where it is most likely to break: two instances' logs on
// one PostgreSQL schema, ownership moved by the shards table's epochs, and a
// takeover racing a write that is already in the database. What must hold:
// a write under a superseded epoch counts for nothing; a takeover that comes
// while a write is in flight waits for it and then sees it (so the new owner
// loads it); a decision row holding one outcome never takes the other.

import pg from 'pg';
import t, { type Test } from 'tap';
import { WriteRefusedError } from '../../src/log/decision-log.js';
import { type Fence, PostgresLog } from '../../src/log/postgres-log.js';
import { ALPHABET } from '../../src/protocol/transaction-ids.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';
import { privateCluster } from '../support/postgres-cluster.js';

const cluster = privateCluster(t);
const T0 = 1_800_000_000_000;
const SHARD = 5;

/** An id in `shard` (its shard digit, protocol/transaction-ids.ts), `n` telling ids apart. */
function idIn(shard: number, n: number): string {
  return `tx_01M8TJ8Z6G${ALPHABET[shard]}${String(n).padStart(15, '0')}`;
}

function begin(id: string): Transaction {
  return createTransaction({
    id,
    nowMs: T0,
    timeoutMs: 60_000,
    oneShot: false,
    participants: [{ name: 'orders', url: 'http://orders.test/tx', database: null, payloadJson: null }],
    idempotencyKey: null,
    requestHash: null,
    metadataJson: null,
    traceParent: null,
  }).tx;
}

function apply(tx: Transaction, events: readonly Event[]): Transaction {
  return events.reduce((current, event) => step(current, event, T0 + 10).tx, tx);
}

const committed = (tx: Transaction) =>
  apply(tx, [{ type: 'commit' }, { type: 'vote', participant: 'orders', vote: 'yes' }]);

/** A fence whose epochs the test sets, as a member would after taking or losing a shard. */
function testFence(ownerId: string) {
  const epochs = new Map<number, number>();
  const lost: Array<[number, number]> = [];
  const refused: Array<[string, string]> = [];
  const fence: Fence = {
    ownerId,
    epochOf: (shard) => epochs.get(shard) ?? null,
    lost: (shard, epoch) => lost.push([shard, epoch]),
    refused: (tx, reason) => refused.push([tx.id, reason]),
  };
  return { fence, epochs, lost, refused };
}

let schemas = 0;
async function twoInstances(t: Test, lazyFlushDelayMs = 5) {
  const schema = `fence_${++schemas}`;
  const open = async (ownerId: string) => {
    const f = testFence(ownerId);
    const log = await PostgresLog.open({
      url: cluster().url(),
      schema,
      batchRecordsMax: 100,
      lazyFlushDelayMs,
      fence: f.fence,
    });
    t.teardown(() => log.close());
    return { log, ...f };
  };
  const a = await open('instance-a');
  const b = await open('instance-b');
  /** Gives the shard to `owner` under a new epoch, as a take does; returns the epoch. */
  const take = async (owner: string, client?: pg.ClientBase): Promise<number> => {
    const sql = `UPDATE ${schema}.shards SET owner = $1, epoch = epoch + 1 WHERE shard = $2 RETURNING epoch`;
    const rows = client ? (await client.query(sql, [owner, SHARD])).rows : await cluster().query(sql, [owner, SHARD]);
    return Number(rows[0]?.epoch);
  };
  return { schema, a, b, take };
}

async function session(t: Test): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: cluster().url() });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}

t.test('a write under a superseded epoch counts for nothing, and its writer hears it lost the shard', async (t) => {
  const { a, b, take } = await twoInstances(t);
  const id = idIn(SHARD, 1);
  a.epochs.set(SHARD, await take('instance-a'));
  await a.log.writeForced(begin(id));

  b.epochs.set(SHARD, await take('instance-b'));
  await t.rejects(a.log.writeForced(committed(begin(id))), new WriteRefusedError(id, 'fenced'));
  t.same(a.lost, [[SHARD, 1]], 'the stale owner is told the shard is gone, with the epoch it held');
  t.same(a.refused, [[id, 'fenced']]);
  t.equal((await b.log.get(id))?.outcome, null, 'the stale decision is not in the store');

  // The new owner decides; the old one, still writing lazily, changes nothing.
  await b.log.writeForced(apply(begin(id), [{ type: 'abort', byOperator: false }]));
  a.log.writeLazy(committed(begin(id)));
  await a.log.flush();
  t.equal((await b.log.get(id))?.outcome, 'abort', "the owner's decision stands");
});

t.test('a record of a shard the writer does not own is refused before it reaches the store', async (t) => {
  const { a } = await twoInstances(t);
  const id = idIn(SHARD + 1, 1);
  await t.rejects(a.log.writeForced(begin(id)), new WriteRefusedError(id, 'fenced'));
  t.equal(await a.log.get(id), undefined);
});

t.test('a takeover that comes while a write is in the database waits for it, then sees it', async (t) => {
  const { schema, a, b, take } = await twoInstances(t);
  const id = idIn(SHARD, 2);
  a.epochs.set(SHARD, await take('instance-a'));
  await a.log.writeForced(begin(id));

  // Hold the write inside its statement: another session locks the row it
  // updates, so the write has its shard lock and waits for the row.
  const blocker = await session(t);
  await blocker.query('BEGIN');
  await blocker.query(`SELECT 1 FROM ${schema}.transactions WHERE id = $1 FOR UPDATE`, [id]);
  const writing = a.log.writeForced(committed(begin(id)));
  await waitForLockWait(schema, 'commitd-writer');

  // The takeover's UPDATE of the shard row must wait for the write's lock.
  const taker = await session(t);
  const taking = take('instance-b', taker);
  await waitForLockWait(schema, null, 2);
  await blocker.query('COMMIT');

  await t.resolves(writing, 'the write in flight under the old epoch completes');
  b.epochs.set(SHARD, await taking);
  const loaded = await b.log.loadUnfinished([SHARD]);
  t.equal(loaded.find((tx) => tx.id === id)?.outcome, 'commit', 'and the new owner, loading after its take, sees it');
  t.same(a.lost, [], 'nothing was lost by the writer: its write counted');
});

t.test('a write that comes while a takeover is in the database waits for it, then counts for nothing', async (t) => {
  const { a, b, take } = await twoInstances(t);
  const id = idIn(SHARD, 3);
  a.epochs.set(SHARD, await take('instance-a'));
  await a.log.writeForced(begin(id));

  const taker = await session(t);
  await taker.query('BEGIN');
  const epoch = await take('instance-b', taker);
  const writing = a.log.writeForced(committed(begin(id)));
  await waitForLockWait(null, 'commitd-writer');
  await taker.query('COMMIT');
  b.epochs.set(SHARD, epoch);

  await t.rejects(writing, new WriteRefusedError(id, 'fenced'), 'the write rechecks the epoch once the lock is free');
  t.equal((await b.log.get(id))?.outcome, null, 'nothing of it reached the store');
});

t.test('a snapshot queued before the shard moved away and back is not written under the new epoch', async (t) => {
  // Lazy records wait for an explicit flush here.
  const { a, b, take } = await twoInstances(t, 60_000);
  const id = idIn(SHARD, 5);
  a.epochs.set(SHARD, await take('instance-a'));
  // Decided commit at A, not yet delivered: A queues a snapshot of it.
  const committing = committed(begin(id));
  await a.log.writeForced(committing);
  a.log.writeLazy(committing);

  // B takes the shard and finishes the transaction (acknowledged everywhere).
  b.epochs.set(SHARD, await take('instance-b'));
  const finished = apply(committing, [{ type: 'acknowledged', participant: 'orders' }]);
  t.not(finished.finishedAtMs, null, 'finished at B');
  await b.log.writeForced(finished);
  // A takes it back before its queued snapshot left: that snapshot is the
  // old ownership's. Written under the new epoch, it would make the
  // finished transaction unfinished again, with nobody driving it.
  a.epochs.set(SHARD, await take('instance-a'));
  await a.log.flush();
  const stored = await a.log.get(id);
  t.equal(stored?.outcome, 'commit');
  t.not(stored?.finishedAtMs, null, 'the finished transaction stays finished');
  t.same(a.refused, [[id, 'fenced']], 'the stale snapshot was refused');
});

t.test('a decision is an insert-if-absent for the owner too: the stored one stands', async (t) => {
  const { a, take } = await twoInstances(t);
  const id = idIn(SHARD, 4);
  a.epochs.set(SHARD, await take('instance-a'));
  await a.log.writeForced(committed(begin(id)));
  const aborted = { ...committed(begin(id)), outcome: 'abort' as const, state: 'aborting' as const };
  await t.rejects(a.log.writeForced(aborted), new WriteRefusedError(id, 'decided'));
  t.same(a.refused, [[id, 'decided']], 'the owner is told, to adopt the stored decision');
  t.same(a.lost, [], 'a lost decision race is not a lost shard');
  t.equal((await a.log.get(id))?.outcome, 'commit');
});

/**
 * Until at least `count` sessions (of application `applicationPrefix`, when
 * given) wait for a lock. Bounded: 10 s.
 */
async function waitForLockWait(_schema: string | null, applicationPrefix: string | null, count = 1): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    const rows = await cluster().query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE wait_event_type = 'Lock' AND ($1::text IS NULL OR application_name LIKE $1 || '%')`,
      [applicationPrefix],
    );
    if ((rows[0]?.n ?? 0) >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('no session came to wait for the lock');
}
