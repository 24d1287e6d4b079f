// The SQLite decision log against a real directory: durability across
// reopen, group commit, the queries recovery and the API rely on, compaction,
// and the refusals that keep a log from being shared or misread.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { type FlushStats, LogLockedError, LogUnusableError } from '../../src/log/decision-log.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/log/schema.js';
import { LOG_FILE, SqliteLog, type SqliteLogOptions } from '../../src/log/sqlite-log.js';
import type { SyncStats } from '../../src/log/wal-sync.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';

const T0 = 1_700_000_000_000;

function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-log-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Opened {
  readonly log: SqliteLog;
  readonly flushes: FlushStats[];
  readonly errors: Error[];
}

/** Opens a log that is closed at teardown (closing twice is harmless). */
function openLog(t: Test, dataDir: string, options: Partial<SqliteLogOptions> = {}): Opened {
  const flushes: FlushStats[] = [];
  const errors: Error[] = [];
  const log = new SqliteLog({
    dataDir,
    batchRecordsMax: 100,
    // Long enough that a lazy record only leaves with a forced one, or by an
    // explicit flush, unless a test shortens it.
    lazyFlushDelayMs: 60_000,
    onFlush: (s) => flushes.push(s),
    onError: (e) => errors.push(e),
    ...options,
  });
  t.teardown(() => log.close());
  return { log, flushes, errors };
}

function begin(id: string, names: readonly string[] = ['orders', 'payments'], key: string | null = null): Transaction {
  return createTransaction({
    id,
    nowMs: T0,
    timeoutMs: 30_000,
    oneShot: false,
    participants: names.map((name) => ({
      name,
      url: `http://${name}:8080/tx`,
      database: null,
      payloadJson: `{"of":"${name}"}`,
    })),
    idempotencyKey: key,
    requestHash: key === null ? null : `hash-${key}`,
    metadataJson: '{"source":"test"}',
    traceParent: null,
  }).tx;
}

function drive(tx: Transaction, nowMs: number, ...events: Event[]): Transaction {
  let current = tx;
  for (const event of events) current = step(current, event, nowMs).tx;
  return current;
}

const yes = (participant: string): Event => ({ type: 'vote', participant, vote: 'yes' });
const ack = (participant: string): Event => ({ type: 'acknowledged', participant });

/** A transaction committed and acknowledged by everyone at `finishedAtMs`. */
function committed(id: string, finishedAtMs: number, names: readonly string[] = ['orders', 'payments']): Transaction {
  const decided = drive(begin(id, names), T0 + 10, { type: 'commit' }, ...names.map(yes));
  return drive(decided, finishedAtMs, ...names.map(ack));
}

/** A transaction with a commit decision that `orders` has not acknowledged yet. */
function committing(id: string): Transaction {
  return drive(begin(id), T0 + 10, { type: 'commit' }, yes('orders'), yes('payments'), ack('payments'));
}

/** What reading a snapshot back gives: payloads only where asked for, nothing that is not durable. */
function asStored(tx: Transaction, withPayloads: boolean): Transaction {
  return {
    ...tx,
    commitRequested: false,
    participants: tx.participants.map((p) => ({
      ...p,
      payloadJson: withPayloads ? p.payloadJson : null,
      attempts: 0,
      lastError: null,
    })),
  };
}

/**
 * Waits for `promise`, failing after `ms`. Its timer also holds the process
 * open meanwhile: the log's own lazy-flush timer does not.
 */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('a forced write resolves and is readable, also after close and reopen', async (t) => {
  const dir = tempDir(t);
  const first = openLog(t, dir);
  const tx = begin('tx_01', ['orders', 'payments'], 'key-1');
  await first.log.writeForced(tx);
  t.same(
    first.flushes.map((f) => [f.records, f.forced]),
    [[1, true]],
  );
  t.same(await first.log.get('tx_01'), asStored(tx, false));
  first.log.close();
  t.ok(fs.existsSync(path.join(dir, LOG_FILE)));

  const second = openLog(t, dir);
  t.same(await second.log.get('tx_01'), asStored(tx, false));
  t.same(await second.log.loadUnfinished(), [asStored(tx, true)]);
  t.equal(await second.log.get('tx_02'), undefined);
});

t.test('a decided transaction keeps every durable field across reopen', async (t) => {
  const dir = tempDir(t);
  const first = openLog(t, dir);
  const tx = begin('tx_01');
  await first.log.writeForced(tx);
  const decided = committing('tx_01');
  await first.log.writeForced(decided);
  first.log.close();
  const second = openLog(t, dir);
  const back = await second.log.get('tx_01');
  t.same(back, asStored(decided, false));
  t.equal(back?.outcome, 'commit');
  t.equal(back?.state, 'committing');
  t.equal(back?.decidedAtMs, T0 + 10);
  t.same(
    back?.participants.map((p) => [p.name, p.vote, p.acknowledged]),
    [
      ['orders', 'yes', false],
      ['payments', 'yes', true],
    ],
  );
  t.same(
    await second.log.loadUnfinished(),
    [asStored(decided, false)],
    'decided: loaded without payloads (they stay on disk; nobody is asked to prepare again)',
  );
});

t.test(
  'a database participant keeps its database; a record written before databases existed reads as HTTP',
  async (t) => {
    const dir = tempDir(t);
    const first = openLog(t, dir);
    const tx = createTransaction({
      id: 'tx_db',
      nowMs: T0,
      timeoutMs: 30_000,
      oneShot: false,
      participants: [
        { name: 'orders', url: null, database: 'orders-db', payloadJson: null },
        { name: 'mail', url: 'http://mail:8080/tx', database: null, payloadJson: null },
      ],
      idempotencyKey: null,
      requestHash: null,
      metadataJson: null,
      traceParent: null,
    }).tx;
    await first.log.writeForced(tx);
    await first.log.writeForced(begin('tx_old', ['orders']));
    first.log.close();
    // As an older commitd wrote it: no database key at all.
    const db = new Database(path.join(dir, LOG_FILE));
    const stored = db.prepare("SELECT participants FROM transactions WHERE id = 'tx_db'").get() as {
      participants: string;
    };
    t.same(
      JSON.parse(stored.participants).map((p: Record<string, unknown>) => 'database' in p),
      [true, false],
      'the database is written only for a database participant',
    );
    db.close();
    const second = openLog(t, dir);
    t.same(
      (await second.log.get('tx_db'))?.participants.map((p) => [p.name, p.url, p.database]),
      [
        ['orders', null, 'orders-db'],
        ['mail', 'http://mail:8080/tx', null],
      ],
    );
    t.same(
      (await second.log.loadUnfinished()).find((x) => x.id === 'tx_old')?.participants.map((p) => p.database),
      [null],
      'no database key reads as an HTTP participant',
    );
  },
);

t.test('forced writes issued in the same tick share one flush and one fsync', async (t) => {
  const syncs: SyncStats[] = [];
  const { log, flushes } = openLog(t, tempDir(t), { onSync: (s) => syncs.push(s) });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 25; i++) writes.push(log.writeForced(begin(`tx_${String(i).padStart(2, '0')}`)));
  t.same(flushes, [], 'nothing is written before the turn of the event loop ends');
  await Promise.all(writes);
  t.equal(flushes.length, 1);
  t.equal(flushes[0]?.records, 25);
  t.equal(flushes[0]?.forced, true);
  t.same(
    syncs.map((s) => s.waiters),
    [25],
  );
  t.equal((await log.loadUnfinished()).length, 25);
});

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * An fdatasync that runs only when the test lets it (or fails it); every
 * batch takes it, none fsyncs inline.
 */
function heldFsyncs(onStart: () => void = () => {}) {
  const held: Array<(error: NodeJS.ErrnoException | null) => void> = [];
  const fdatasync = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
    onStart();
    held.push((error) => (error ? callback(error) : fs.fdatasync(fd, callback)));
  };
  return { held, syncHooks: { fdatasync, inlineMaxWaiters: 0 } };
}

t.test('a lone forced writer on a quiet log fsyncs inline: no thread-pool hop', async (t) => {
  const { held, syncHooks } = heldFsyncs();
  const syncs: SyncStats[] = [];
  // Only the async fsync is held: this log may fsync inline, as in service.
  const { log } = openLog(t, tempDir(t), {
    syncHooks: { fdatasync: syncHooks.fdatasync },
    onSync: (s) => syncs.push(s),
  });
  await log.writeForced(begin('tx_a'));
  t.equal(held.length, 0, 'the async fsync was not used');
  t.same(
    syncs.map((s) => s.waiters),
    [1],
  );
  const both = Promise.all([log.writeForced(begin('tx_b')), log.writeForced(begin('tx_c'))]);
  await turn();
  t.equal(held.length, 1, 'two writers in one batch take the async way');
  t.same(
    syncs.map((s) => s.waiters),
    [1],
    'and are not heard of before it completes',
  );
  held[0]?.(null);
  await both;
  t.same(
    syncs.map((s) => s.waiters),
    [1, 2],
  );
});

t.test(
  'a forced writer hears only after the fsync that follows its batch; batches written meanwhile share the next',
  async (t) => {
    // What each fsync could cover when it started: an fsync that starts
    // before its batch is written would leave that batch out.
    const startedWith: string[][] = [];
    let readable = (): string[] => [];
    const { held, ...fsyncs } = heldFsyncs(() => startedWith.push(readable()));
    const syncs: SyncStats[] = [];
    const { log, flushes } = openLog(t, tempDir(t), { ...fsyncs, onSync: (s) => syncs.push(s) });
    readable = () => ['tx_a', 'tx_b', 'tx_c'].filter((id) => log.getNow(id) !== undefined);
    const heard: string[] = [];
    const a = log.writeForced(begin('tx_a')).then(() => heard.push('a'));
    await turn();
    t.equal(flushes.length, 1, 'the batch is written');
    t.ok(await log.get('tx_a'), 'and readable');
    t.equal(held.length, 1, 'its fsync started');
    const b = log.writeForced(begin('tx_b')).then(() => heard.push('b'));
    const c = log.writeForced(begin('tx_c')).then(() => heard.push('c'));
    await turn();
    t.equal(flushes.length, 2, 'the next batch is written while the fsync runs');
    t.equal(held.length, 1, 'but no second fsync starts while one runs');
    t.same(heard, [], 'nobody has heard: nothing is known to be on disk');
    held[0]?.(null);
    await a;
    t.same(heard, ['a']);
    t.equal(held.length, 2, 'the batch written meanwhile gets its own fsync once the first is done');
    held[1]?.(null);
    await Promise.all([b, c]);
    t.same(heard, ['a', 'b', 'c']);
    t.same(
      syncs.map((s) => s.waiters),
      [1, 2],
    );
    t.same(startedWith, [['tx_a'], ['tx_a', 'tx_b', 'tx_c']], 'each fsync started after the batches it acknowledged');
  },
);

t.test('a failed inline fsync is fatal too', async (t) => {
  const events: string[] = [];
  const { log } = openLog(t, tempDir(t), {
    syncHooks: {
      fdatasyncSync: () => {
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      },
    },
    onFatal: (e) => events.push(`fatal: ${e.message}`),
  });
  await log.writeForced(begin('tx_a')).catch((e: Error) => events.push(`rejected: ${e.name}`));
  t.equal(events.length, 2);
  t.match(events[0], /^fatal: fsync of the decision log's WAL .* failed: EIO/);
  t.equal(events[1], 'rejected: LogUnusableError');
  await t.rejects(log.writeForced(begin('tx_b')), LogUnusableError, 'and the log refuses writes from then on');
});

t.test(
  'a failed fsync is fatal: the log says so before any writer hears, and refuses writes from then on',
  async (t) => {
    const { held, ...fsyncs } = heldFsyncs();
    const events: string[] = [];
    const { log, errors } = openLog(t, tempDir(t), {
      ...fsyncs,
      onFatal: (e) => events.push(`fatal: ${e.message}`),
    });
    const write = log.writeForced(begin('tx_a')).catch((e: Error) => events.push(`rejected: ${e.name}`));
    await turn();
    held[0]?.(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await write;
    t.equal(events.length, 2);
    t.match(events[0], /^fatal: fsync of the decision log's WAL .*commitd\.db-wal failed: EIO/);
    t.equal(events[1], 'rejected: LogUnusableError');
    t.equal(errors.length, 1, 'reported as a log error too');
    await t.rejects(log.writeForced(begin('tx_b')), LogUnusableError);
    t.throws(() => log.writeLazy(begin('tx_c')), LogUnusableError);
  },
);

t.test('close fsyncs what waits for it, and an fsync still running finishes on its own', async (t) => {
  const { held, ...fsyncs } = heldFsyncs();
  const { log } = openLog(t, tempDir(t), fsyncs);
  const heard: string[] = [];
  const a = log.writeForced(begin('tx_a')).then(() => heard.push('a'));
  await turn();
  const b = log.writeForced(begin('tx_b')).then(() => heard.push('b'));
  log.close();
  await b;
  t.same(heard, ['b'], 'the waiter queued behind the running fsync is synced by close itself');
  held[0]?.(null);
  await a;
  t.same(heard, ['b', 'a']);
});

t.test('a flush carries at most maxBatchRecords; the rest follow in further flushes', async (t) => {
  const { log, flushes } = openLog(t, tempDir(t), { batchRecordsMax: 2 });
  const writes = ['tx_1', 'tx_2', 'tx_3', 'tx_4', 'tx_5'].map((id) => log.writeForced(begin(id)));
  await Promise.all(writes);
  t.same(
    flushes.map((f) => [f.records, f.forced]),
    [
      [2, true],
      [2, true],
      [1, true],
    ],
  );
});

t.test('queued lazy records ride along with a forced one', async (t) => {
  const { log, flushes } = openLog(t, tempDir(t));
  let written = 0;
  log.writeLazy(begin('tx_lazy'), () => written++);
  await log.writeForced(begin('tx_forced'));
  t.same(
    flushes.map((f) => [f.records, f.forced]),
    [[2, true]],
  );
  t.equal(written, 1);
  t.ok(await log.get('tx_lazy'));
});

t.test('a lazy-only batch is written without fsync and runs its onWritten callbacks', async (t) => {
  // Every fdatasync commitd runs on the WAL, inline or on the thread pool, is counted.
  let fsyncs = 0;
  const { log, flushes } = openLog(t, tempDir(t), {
    lazyFlushDelayMs: 5,
    syncHooks: {
      fdatasync: (fd, callback) => {
        fsyncs++;
        fs.fdatasync(fd, callback);
      },
      fdatasyncSync: (fd) => {
        fsyncs++;
        fs.fdatasyncSync(fd);
      },
    },
  });
  const order: string[] = [];
  const allWritten = new Promise<void>((resolve) => {
    log.writeLazy(begin('tx_a'), () => order.push('tx_a'));
    log.writeLazy(begin('tx_b'));
    log.writeLazy(begin('tx_c'), () => {
      order.push('tx_c');
      resolve();
    });
  });
  t.same(flushes, [], 'a lazy record waits for company');
  t.same(order, []);
  await within(allWritten, 5_000, 'lazy records written');
  t.same(order, ['tx_a', 'tx_c']);
  t.same(
    flushes.map((f) => [f.records, f.forced]),
    [[3, false]],
  );
  t.ok(await log.get('tx_b'));
  // An fsync is counted as it starts, inline or on the thread pool.
  t.equal(fsyncs, 0, 'no fsync for a lazy-only batch');
  // The count can fail: a forced record costs exactly one.
  await log.writeForced(begin('tx_d'));
  t.equal(fsyncs, 1, 'a forced record costs one fsync, counted');
});

t.test('lazy records reaching maxBatchRecords are flushed without waiting for the delay', async (t) => {
  const { log, flushes } = openLog(t, tempDir(t), { batchRecordsMax: 3 });
  const done = new Promise<void>((resolve) => {
    log.writeLazy(begin('tx_1'));
    log.writeLazy(begin('tx_2'));
    log.writeLazy(begin('tx_3'), resolve);
  });
  await within(done, 2_000, 'a full batch of lazy records written');
  t.same(
    flushes.map((f) => [f.records, f.forced]),
    [[3, false]],
  );
});

t.test('flush() writes everything queued at once', async (t) => {
  const { log, flushes } = openLog(t, tempDir(t));
  let written = false;
  log.writeLazy(begin('tx_1'), () => {
    written = true;
  });
  await log.flush();
  t.equal(written, true);
  t.same(
    flushes.map((f) => [f.records, f.forced]),
    [[1, false]],
  );
  t.ok(await log.get('tx_1'));
});

t.test('a newer snapshot of the same transaction replaces a queued older one', async (t) => {
  t.test('lazy then forced: one record, the newer state, fsynced, both callbacks honoured', async (t) => {
    const { log, flushes } = openLog(t, tempDir(t));
    const older = begin('tx_1');
    const newer = committing('tx_1');
    let olderWritten = false;
    log.writeLazy(older, () => {
      olderWritten = true;
    });
    await log.writeForced(newer);
    t.same(
      flushes.map((f) => [f.records, f.forced]),
      [[1, true]],
    );
    t.equal(olderWritten, true);
    t.same(await log.get('tx_1'), asStored(newer, false));
  });

  t.test('forced then lazy: one record, the newer state, still fsynced', async (t) => {
    const { log, flushes } = openLog(t, tempDir(t));
    const older = committing('tx_1');
    const newer = drive(older, T0 + 20, ack('orders'));
    t.equal(newer.state, 'committed');
    const forced = log.writeForced(older);
    log.writeLazy(newer);
    await forced;
    t.same(
      flushes.map((f) => [f.records, f.forced]),
      [[1, true]],
    );
    t.equal((await log.get('tx_1'))?.state, 'committed');
    t.same(await log.loadUnfinished(), []);
  });
});

t.test('loadUnfinished returns unfinished transactions with payloads, and no finished one', async (t) => {
  const { log } = openLog(t, tempDir(t));
  const a = begin('tx_a', ['orders', 'payments']);
  const b = committing('tx_b');
  const done = committed('tx_c', T0 + 100);
  await Promise.all([log.writeForced(a), log.writeForced(begin('tx_b')), log.writeForced(begin('tx_c'))]);
  await Promise.all([log.writeForced(b), log.writeForced(done)]);
  const unfinished = await log.loadUnfinished();
  t.same(
    unfinished.map((tx) => tx.id),
    ['tx_a', 'tx_b'],
  );
  t.same(unfinished, [asStored(a, true), asStored(b, true)]);
  t.same(
    unfinished[0]?.participants.map((p) => p.payloadJson),
    ['{"of":"orders"}', '{"of":"payments"}'],
  );
  t.equal((await log.get('tx_c'))?.state, 'committed', 'the finished one is still readable');

  // Preparing, undecided: its prepares are out, recovery only aborts it, so
  // its payloads (which may be large) stay on disk at start.
  const preparing = drive(begin('tx_p'), T0 + 10, { type: 'prepare' });
  t.ok(
    preparing.participants.every((p) => p.payloadJson !== null),
    'in memory it still has them',
  );
  await log.writeForced(begin('tx_p'));
  await log.writeForced(preparing);
  const loaded = (await log.loadUnfinished()).find((tx) => tx.id === 'tx_p');
  t.same(
    loaded?.participants.map((p) => p.payloadJson),
    [null, null],
    'only an active transaction is loaded with its payloads',
  );
});

t.test('list pages newest first, filters by state and hands out a cursor', async (t) => {
  const { log } = openLog(t, tempDir(t));
  const ids = ['tx_01', 'tx_02', 'tx_03', 'tx_04', 'tx_05'];
  await Promise.all(ids.map((id) => log.writeForced(begin(id))));
  await Promise.all([log.writeForced(committed('tx_02', T0 + 50)), log.writeForced(committed('tx_04', T0 + 50))]);

  const page1 = await log.list({ state: null, limit: 2, after: null });
  t.same(
    page1.transactions.map((tx) => tx.id),
    ['tx_05', 'tx_04'],
  );
  t.equal(page1.next, 'tx_04');
  const page2 = await log.list({ state: null, limit: 2, after: page1.next });
  t.same(
    page2.transactions.map((tx) => tx.id),
    ['tx_03', 'tx_02'],
  );
  t.equal(page2.next, 'tx_02');
  const page3 = await log.list({ state: null, limit: 2, after: page2.next });
  t.same(
    page3.transactions.map((tx) => tx.id),
    ['tx_01'],
  );
  t.equal(page3.next, null);

  const exact = await log.list({ state: null, limit: 5, after: null });
  t.equal(exact.transactions.length, 5);
  t.equal(exact.next, null, 'no cursor when nothing is left');

  const active = await log.list({ state: 'active', limit: 10, after: null });
  t.same(
    active.transactions.map((tx) => tx.id),
    ['tx_05', 'tx_03', 'tx_01'],
  );
  t.equal(active.next, null);
  const committedPage = await log.list({ state: 'committed', limit: 1, after: null });
  t.same(
    committedPage.transactions.map((tx) => tx.id),
    ['tx_04'],
  );
  t.equal(committedPage.next, 'tx_04');
  const committedRest = await log.list({ state: 'committed', limit: 1, after: committedPage.next });
  t.same(
    committedRest.transactions.map((tx) => [tx.id, tx.state]),
    [['tx_02', 'committed']],
  );
  t.equal(committedRest.next, null);
  t.same(await log.list({ state: 'aborted', limit: 10, after: null }), { transactions: [], next: null });
});

t.test('findByIdempotencyKey finds the transaction begun with the key', async (t) => {
  const { log } = openLog(t, tempDir(t));
  const tx = begin('tx_k', ['orders'], 'order-42');
  await Promise.all([log.writeForced(tx), log.writeForced(begin('tx_other', ['orders'], 'order-43'))]);
  const found = await log.findByIdempotencyKey('order-42');
  t.same(found, asStored(tx, false));
  t.equal(found?.requestHash, 'hash-order-42');
  t.equal(await log.findByIdempotencyKey('order-44'), undefined);
});

t.test('compact keeps an idempotency key, with the transaction as it finished, for the key retention', async (t) => {
  const { log } = openLog(t, tempDir(t));
  const keyed = (id: string, key: string, finishedAtMs: number) => {
    const decided = drive(begin(id, ['orders'], key), T0 + 10, { type: 'commit' }, yes('orders'));
    return drive(decided, finishedAtMs, ack('orders'));
  };
  await Promise.all([
    log.writeForced(begin('tx_a', ['orders'], 'key-a')),
    log.writeForced(begin('tx_b', ['orders'], 'key-b')),
  ]);
  const a = keyed('tx_a', 'key-a', T0 + 100);
  const b = keyed('tx_b', 'key-b', T0 + 200);
  await Promise.all([log.writeForced(a), log.writeForced(b)]);

  // Details forgotten after T0 + 300; keys kept for those finished from T0 + 150 on.
  t.equal(await log.compact(T0 + 300, T0 + 150, 10), 2);
  t.equal(await log.get('tx_a'), undefined);
  t.equal(await log.get('tx_b'), undefined);
  t.equal(await log.findByIdempotencyKey('key-a'), undefined, 'finished before the key cutoff: key forgotten too');
  const kept = await log.findByIdempotencyKey('key-b');
  t.same(kept, asStored(b, false), 'the key finds the transaction as it finished');
  t.equal(kept?.requestHash, 'hash-key-b', 'and what tells a retry from another request');

  t.equal(await log.compact(T0 + 300, T0 + 150, 10), 0, 'nothing more to forget');
  t.ok(await log.findByIdempotencyKey('key-b'), 'kept while within its retention');
  await log.compact(T0 + 300, T0 + 201, 10);
  t.equal(await log.findByIdempotencyKey('key-b'), undefined, 'expired with the key retention');
});

t.test('compact forgets only transactions finished before the cutoff, with their payloads', async (t) => {
  const dir = tempDir(t);
  const { log } = openLog(t, dir);
  const ids = ['tx_old1', 'tx_old2', 'tx_old3', 'tx_new', 'tx_open'];
  await Promise.all(ids.map((id) => log.writeForced(begin(id))));
  await Promise.all([
    log.writeForced(committed('tx_old1', T0 + 100)),
    log.writeForced(committed('tx_old2', T0 + 200)),
    log.writeForced(committed('tx_old3', T0 + 300)),
    log.writeForced(committed('tx_new', T0 + 1_000)),
    log.writeForced(committing('tx_open')),
  ]);

  t.equal(await log.compact(T0 + 100, 0, 10), 0, 'the cutoff is exclusive');
  t.equal(await log.compact(T0 + 500, 0, 2), 2, 'at most maxRows at a time');
  t.equal(await log.compact(T0 + 500, 0, 10), 1);
  t.equal(await log.compact(T0 + 500, 0, 10), 0);
  for (const id of ['tx_old1', 'tx_old2', 'tx_old3']) t.equal(await log.get(id), undefined, `${id} forgotten`);
  t.equal((await log.get('tx_new'))?.state, 'committed');
  t.equal((await log.get('tx_open'))?.state, 'committing');
  t.same(
    (await log.loadUnfinished()).map((tx) => tx.id),
    ['tx_open'],
  );
  log.close();

  const db = new Database(path.join(dir, LOG_FILE), { readonly: true });
  try {
    const rows = db.prepare('SELECT tx_id, name FROM payloads ORDER BY tx_id, name').all();
    // tx_new's went when it finished (issue 23), before any compaction.
    t.same(rows, [
      { tx_id: 'tx_open', name: 'orders' },
      { tx_id: 'tx_open', name: 'payments' },
    ]);
  } finally {
    db.close();
  }
});

t.test('a second log on the same directory is refused while the first is open', async (t) => {
  const dir = tempDir(t);
  const first = openLog(t, dir);
  await first.log.writeForced(begin('tx_1'));
  t.throws(() => openLog(t, dir), LogLockedError);
  t.throws(() => openLog(t, dir), { name: 'LogLockedError', message: /locked/ });
  // The refused attempt did not disturb the holder.
  await first.log.writeForced(begin('tx_2'));
  first.log.close();
  const second = openLog(t, dir);
  t.same(
    (await second.log.loadUnfinished()).map((tx) => tx.id),
    ['tx_1', 'tx_2'],
  );
});

t.test('an existing log is locked from the moment it is opened, before any write', async (t) => {
  const dir = tempDir(t);
  const setup = openLog(t, dir);
  await setup.log.writeForced(begin('tx_1'));
  setup.log.close();
  const first = openLog(t, dir);
  t.throws(() => openLog(t, dir), LogLockedError);
  first.log.close();
  t.equal((await openLog(t, dir).log.get('tx_1'))?.state, 'active');
});

t.test('a log written by a newer schema version is refused', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, LOG_FILE));
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  t.throws(() => openLog(t, dir), LogUnusableError);
  t.throws(() => openLog(t, dir), { message: new RegExp(`schema version ${SCHEMA_VERSION + 1}`) });
});

t.test('a log at the current schema version opens and keeps its version', async (t) => {
  const dir = tempDir(t);
  openLog(t, dir).log.close();
  const db = new Database(path.join(dir, LOG_FILE), { readonly: true });
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  db.close();
  await t.resolves(openLog(t, dir).log.close());
});

t.test('a file of garbage bytes is refused', async (t) => {
  const dir = tempDir(t);
  const garbage = Buffer.alloc(8192);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 256;
  fs.writeFileSync(path.join(dir, LOG_FILE), garbage);
  t.throws(() => openLog(t, dir), LogUnusableError);
  t.same(fs.readFileSync(path.join(dir, LOG_FILE)), garbage, 'the file is left as it was');
});

t.test('the decision_is_final trigger refuses to rewrite an outcome', async (t) => {
  const dir = tempDir(t);
  const { log, errors } = openLog(t, dir);
  await log.writeForced(begin('tx_1'));
  const decided = committed('tx_1', T0 + 100);
  await log.writeForced(decided);
  const rewritten: Transaction = { ...decided, state: 'aborted', outcome: 'abort', abortReason: 'client' };
  await t.rejects(log.writeForced(rewritten), { message: /a decision is never rewritten/ });
  t.equal(errors.length, 1, 'the failed flush is reported');
  t.match(errors[0]?.message, /a decision is never rewritten/);
  t.equal((await log.get('tx_1'))?.outcome, 'commit');
  t.equal((await log.get('tx_1'))?.state, 'committed');
  // The log goes on working for everyone else.
  await log.writeForced(begin('tx_2'));
  t.equal((await log.get('tx_2'))?.state, 'active');
  log.close();
  t.equal((await openLog(t, dir).log.get('tx_1'))?.outcome, 'commit');
});

t.test('a lazy record the log refuses is dropped once, loudly, and does not sink the records beside it', async (t) => {
  const dir = tempDir(t);
  const { log, errors, flushes } = openLog(t, dir);
  await log.writeForced(begin('tx_1'));
  const decided = committed('tx_1', T0 + 100);
  await log.writeForced(decided);
  // A bug's record: the trigger refuses it, and it rides with an unrelated forced write.
  log.writeLazy({ ...decided, state: 'aborted', outcome: 'abort', abortReason: 'client' });
  await log.writeForced(begin('tx_2'));
  t.equal((await log.get('tx_2'))?.state, 'active', 'the forced write beside it is on disk');
  t.equal(errors.length, 1, 'reported once');
  t.match(errors[0]?.message, /dropped a record of tx_1 the log refuses: a decision is never rewritten/);
  const before = flushes.length;
  await log.writeForced(begin('tx_3'));
  t.equal(flushes.length, before + 1, 'and not retried: the next flush carries only new records');
  t.equal(flushes.at(-1)?.records, 1);
  t.equal((await log.get('tx_1'))?.outcome, 'commit');
  await t.resolves(log.close(), 'closing is not blocked by it');
});

t.test('close writes what is queued; a closed log refuses writes', async (t) => {
  const dir = tempDir(t);
  const { log } = openLog(t, dir);
  log.writeLazy(begin('tx_1'));
  log.close();
  await t.rejects(log.writeForced(begin('tx_2')), LogUnusableError);
  t.throws(() => log.writeLazy(begin('tx_3')), LogUnusableError);
  const reopened = openLog(t, dir);
  t.same(
    (await reopened.log.loadUnfinished()).map((tx) => tx.id),
    ['tx_1'],
  );
});

t.test('a log written by schema version 1 is migrated in place, its transactions intact', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, LOG_FILE));
  db.exec(MIGRATIONS[0] as string);
  db.pragma('user_version = 1');
  db.prepare(
    `INSERT INTO transactions (id, state, outcome, one_shot, created_at_ms, deadline_ms, participants)
     VALUES ('tx_1', 'committing', 'commit', 0, 1, 2, '[{"name":"a","url":"http://a/tx","vote":"yes","voteLost":false,"reason":null,"acknowledged":false,"heuristic":null}]')`,
  ).run();
  db.close();
  const { log } = openLog(t, dir);
  t.same(
    (await log.loadUnfinished()).map((tx) => [tx.id, tx.state, tx.outcome, tx.participants[0]?.vote, tx.traceParent]),
    [['tx_1', 'committing', 'commit', 'yes', null]],
  );
  log.close();
  const after = new Database(path.join(dir, LOG_FILE), { readonly: true });
  t.equal(after.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  const indexes = after
    .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'transactions_%'")
    .all();
  t.same(indexes, [{ name: 'transactions_finished' }], 'only the index compaction uses is left');
  after.close();
});

t.test('version 3: an explicit transaction an older commitd wrote as active is taken as preparing', async (t) => {
  // Before version 3 `preparing` was written lazily, so `active` on disk did
  // not prove that no prepare had left. Recovery must abort such a one and
  // tell its participants; an active one with nobody listed, or a one-shot,
  // keeps its state (recovery handles those as before).
  const dir = tempDir(t);
  const db = new Database(path.join(dir, LOG_FILE));
  db.exec(MIGRATIONS[0] as string);
  db.exec(MIGRATIONS[1] as string);
  db.pragma('user_version = 2');
  const insert = db.prepare(
    `INSERT INTO transactions (id, state, one_shot, created_at_ms, deadline_ms, participants) VALUES (?, 'active', ?, 1, 2, ?)`,
  );
  const listed =
    '[{"name":"a","url":"http://a/tx","vote":null,"voteLost":false,"reason":null,"acknowledged":false,"heuristic":null}]';
  insert.run('tx_explicit', 0, listed);
  insert.run('tx_empty', 0, '[]');
  insert.run('tx_one_shot', 1, listed);
  db.close();
  const { log } = openLog(t, dir);
  t.same(
    (await log.loadUnfinished()).map((tx) => [tx.id, tx.state]),
    [
      ['tx_empty', 'active'],
      ['tx_explicit', 'preparing'],
      ['tx_one_shot', 'active'],
    ],
  );
});

t.test(
  'version 5: the traceparent is kept with the begin, through a restart, and old snapshots read without one',
  async (t) => {
    const dir = tempDir(t);
    const traceParent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const first = openLog(t, dir);
    const tx = { ...begin('tx_traced'), traceParent };
    await first.log.writeForced(tx);
    await first.log.writeForced(drive(tx, T0 + 1, { type: 'commit' }, yes('orders'), yes('payments')));
    first.log.close();
    // A key's snapshot kept by a commitd before version 5 has no trace_parent.
    const db = new Database(path.join(dir, LOG_FILE));
    const old = { ...(db.prepare("SELECT * FROM transactions WHERE id = 'tx_traced'").get() as object) };
    delete (old as { trace_parent?: unknown }).trace_parent;
    db.prepare('INSERT INTO idempotency_keys (idempotency_key, finished_at_ms, snapshot) VALUES (?, ?, ?)').run(
      'old-key',
      T0,
      JSON.stringify({ ...old, id: 'tx_old', idempotency_key: 'old-key' }),
    );
    db.close();
    const { log } = openLog(t, dir);
    t.same(
      (await log.loadUnfinished()).map((u) => [u.id, u.state, u.traceParent]),
      [['tx_traced', 'committing', traceParent]],
      'recovery reads it back with the decision',
    );
    t.equal((await log.get('tx_traced'))?.traceParent, traceParent);
    t.equal((await log.findByIdempotencyKey('old-key'))?.traceParent, null);
  },
);
