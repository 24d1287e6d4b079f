// The decision log on SQLite: WAL mode, one process at a time, group commit.
//
// Group commit: every snapshot written during one turn of the event loop joins
// the same SQLite transaction. Every batch commits with synchronous=NORMAL: in
// WAL mode that survives a crash of the process at once. A batch that holds a
// forced record then waits for an fdatasync of the WAL, which runs off the
// event loop (wal-sync.ts) and covers every batch written before it started;
// only then do its forced writers hear. Lazy records cost no fsync of their
// own: the next one, or SQLite's checkpoint, makes them durable against power
// loss too.

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Actor, HistoryEntry } from '../protocol/history.js';
import { shardOfId } from '../protocol/transaction-ids.js';
import { type Transaction, TX_STATES } from '../protocol/types.js';
import {
  type DecisionLog,
  type FlushStats,
  type HeuristicResolution,
  type ListPage,
  type ListQuery,
  LogLockedError,
  LogUnusableError,
} from './decision-log.js';
import { fromRow, participantsJson, type TxRow } from './records.js';
import { migrate } from './schema.js';
import { type SyncStats, WalSync, type WalSyncHooks } from './wal-sync.js';
import { type Pending, WriteQueue } from './write-queue.js';

export interface SqliteLogOptions {
  readonly dataDir: string;
  /** Most records one flush carries; more wait for the next flush. */
  readonly batchRecordsMax: number;
  /** How long lazy records may wait for a forced one to ride along with. */
  readonly lazyFlushDelayMs: number;
  readonly onFlush?: (stats: FlushStats) => void;
  /** Each fsync of the WAL, once it completed. */
  readonly onSync?: (stats: SyncStats) => void;
  readonly onError?: (error: Error) => void;
  /**
   * An fsync failed, so the log can no longer say what is on disk: a service
   * stops here (recovery reads what the disk holds). Without it the log
   * refuses every write from then on.
   */
  readonly onFatal?: (error: LogUnusableError) => void;
  /** For tests (see wal-sync.ts). */
  readonly syncHooks?: WalSyncHooks;
}

export const LOG_FILE = 'commitd.db';

const NO_HISTORY: ReadonlyMap<string, HistoryEntry[]> = new Map();

/** SQLite failures that may pass (a full disk, an I/O error, a lock), as opposed to a refused record. */
const TRANSIENT = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|READONLY|CANTOPEN|PROTOCOL|NOMEM)/;

export class SqliteLog implements DecisionLog {
  private readonly db: Database.Database;
  private readonly wal: WalSync;
  private readonly statements;
  private readonly queue: WriteQueue;
  /** History entries not yet written, by transaction: they ride along with the next flush. */
  private pendingHistory = new Map<string, HistoryEntry[]>();
  private closed = false;

  constructor(private readonly options: SqliteLogOptions) {
    this.queue = new WriteQueue({
      due: () => this.flushScheduledBatch(),
      admit: () => {
        this.assertOpen();
        return null;
      },
      lazyFlushDelayMs: options.lazyFlushDelayMs,
      batchRecordsMax: options.batchRecordsMax,
    });
    this.db = open(options.dataDir);
    try {
      this.wal = new WalSync(path.join(options.dataDir, `${LOG_FILE}-wal`), {
        ...options.syncHooks,
        onSync: options.onSync,
        onFailure: (error) => {
          options.onFatal?.(error);
          options.onError?.(error);
        },
      });
    } catch (error) {
      this.db.close();
      throw new LogUnusableError(`cannot open the decision log's WAL: ${(error as Error).message}`);
    }
    this.statements = {
      upsert: this.db.prepare(`
        INSERT INTO transactions (id, state, outcome, abort_reason, one_shot, created_at_ms, deadline_ms,
          decided_at_ms, finished_at_ms, idempotency_key, request_hash, metadata, trace_parent, caller, began_by,
          participants)
        VALUES (@id, @state, @outcome, @abort_reason, @one_shot, @created_at_ms, @deadline_ms,
          @decided_at_ms, @finished_at_ms, @idempotency_key, @request_hash, @metadata, @trace_parent, @caller,
          @began_by,
          @participants)
        ON CONFLICT (id) DO UPDATE SET state = excluded.state, outcome = excluded.outcome,
          abort_reason = excluded.abort_reason, decided_at_ms = excluded.decided_at_ms,
          finished_at_ms = excluded.finished_at_ms, participants = excluded.participants`),
      insertPayload: this.db.prepare('INSERT OR IGNORE INTO payloads (tx_id, name, payload) VALUES (?, ?, ?)'),
      get: this.db.prepare('SELECT * FROM transactions WHERE id = ?'),
      byKey: this.db.prepare('SELECT * FROM transactions WHERE idempotency_key = ?'),
      payloads: this.db.prepare('SELECT name, payload FROM payloads WHERE tx_id = ?'),
      unfinished: this.db.prepare('SELECT * FROM transactions WHERE finished_at_ms IS NULL ORDER BY id'),
      // A transaction with an unresolved heuristic is kept until an operator resolves it.
      finishedBefore: this.db.prepare(
        `SELECT * FROM transactions WHERE finished_at_ms IS NOT NULL AND finished_at_ms < ?
           AND id NOT IN (SELECT tx_id FROM heuristics WHERE resolved_at_ms IS NULL) LIMIT ?`,
      ),
      keepKey: this.db.prepare(
        'INSERT OR REPLACE INTO idempotency_keys (idempotency_key, finished_at_ms, snapshot) VALUES (?, ?, ?)',
      ),
      keptKey: this.db.prepare('SELECT snapshot FROM idempotency_keys WHERE idempotency_key = ?'),
      expireKeys: this.db.prepare(
        `DELETE FROM idempotency_keys WHERE idempotency_key IN
           (SELECT idempotency_key FROM idempotency_keys WHERE finished_at_ms < ? LIMIT ?)`,
      ),
      keepCommitted: this.db.prepare('INSERT OR IGNORE INTO committed (id, finished_at_ms) VALUES (?, ?)'),
      keptOutcome: this.db.prepare(
        `SELECT EXISTS (SELECT 1 FROM committed WHERE id = @id) AS committed,
           EXISTS (SELECT 1 FROM forgotten_horizon WHERE through_id >= @id) AS forgotten`,
      ),
      expiredCommitted: this.db.prepare('SELECT id FROM committed WHERE finished_at_ms < ? LIMIT ?'),
      deleteCommitted: this.db.prepare('DELETE FROM committed WHERE id = ?'),
      raiseHorizon: this.db.prepare(
        `INSERT INTO forgotten_horizon (one, through_id) VALUES (1, @id)
         ON CONFLICT (one) DO UPDATE SET through_id = max(through_id, excluded.through_id)`,
      ),
      deleteTx: this.db.prepare('DELETE FROM transactions WHERE id = ?'),
      deletePayloads: this.db.prepare('DELETE FROM payloads WHERE tx_id = ?'),
      appendHistory: this.db.prepare(
        // Only with its transaction: entries still queued when it was
        // compacted would otherwise stay behind, for good.
        `INSERT INTO history (tx_id, seq, entries)
         SELECT @txId, COALESCE(MAX(seq), 0) + 1, @entries FROM history WHERE tx_id = @txId
         HAVING EXISTS (SELECT 1 FROM transactions WHERE id = @txId)`,
      ),
      history: this.db.prepare('SELECT entries FROM history WHERE tx_id = ? ORDER BY seq'),
      deleteHistory: this.db.prepare('DELETE FROM history WHERE tx_id = ?'),
      reportHeuristic: this.db.prepare(
        'INSERT OR IGNORE INTO heuristics (tx_id, participant, heuristic, reported_at_ms) VALUES (?, ?, ?, ?)',
      ),
      resolveHeuristics: this.db.prepare(
        `UPDATE heuristics SET resolved_at_ms = @atMs, note = @note, resolved_by = @by
         WHERE tx_id = @txId AND resolved_at_ms IS NULL AND (@participant IS NULL OR participant = @participant)
         RETURNING participant`,
      ),
      resolutions: this.db.prepare(
        `SELECT participant, resolved_at_ms, note, resolved_by FROM heuristics
         WHERE tx_id = ? AND resolved_at_ms IS NOT NULL ORDER BY participant`,
      ),
      unresolvedHeuristics: this.db.prepare('SELECT count(*) AS n FROM heuristics WHERE resolved_at_ms IS NULL'),
      deleteHeuristics: this.db.prepare('DELETE FROM heuristics WHERE tx_id = ?'),
      claimDeployment: this.db.prepare('INSERT OR IGNORE INTO deployment (one, id) VALUES (1, ?)'),
      deployment: this.db.prepare('SELECT id FROM deployment'),
    };
  }

  writeForced(tx: Transaction): Promise<void> {
    return this.queue.writeForced(tx);
  }

  writeLazy(tx: Transaction, onWritten?: () => void): void {
    this.queue.writeLazy(tx, onWritten);
  }

  appendHistory(txId: string, entries: readonly HistoryEntry[]): void {
    if (entries.length === 0) return;
    this.assertOpen();
    const queued = this.pendingHistory.get(txId);
    if (queued) queued.push(...entries);
    else this.pendingHistory.set(txId, [...entries]);
    this.schedule('later');
  }

  async history(txId: string): Promise<HistoryEntry[]> {
    const rows = this.statements.history.all(txId) as Array<{ entries: string }>;
    const written = rows.flatMap((r) => JSON.parse(r.entries) as HistoryEntry[]);
    return [...written, ...(this.pendingHistory.get(txId) ?? [])];
  }

  async resolveHeuristics(
    txId: string,
    participant: string | null,
    resolution: Omit<HeuristicResolution, 'participant'>,
  ): Promise<string[]> {
    this.assertOpen();
    const rows = this.statements.resolveHeuristics.all({
      txId,
      participant,
      atMs: resolution.atMs,
      note: resolution.note,
      by: resolution.by === null ? null : JSON.stringify(resolution.by),
    }) as Array<{ participant: string }>;
    return rows.map((r) => r.participant);
  }

  async resolutions(txId: string): Promise<HeuristicResolution[]> {
    const rows = this.statements.resolutions.all(txId) as Array<{
      participant: string;
      resolved_at_ms: number;
      note: string;
      resolved_by: string | null;
    }>;
    return rows.map((r) => ({
      participant: r.participant,
      atMs: r.resolved_at_ms,
      note: r.note,
      by: r.resolved_by === null ? null : (JSON.parse(r.resolved_by) as Actor),
    }));
  }

  async claimDeploymentId(proposed: string): Promise<string> {
    // Written at once: no name carrying it reaches a database before a
    // transaction's begin is forced, and that fsync of the WAL covers this
    // row, written before it.
    this.statements.claimDeployment.run(proposed);
    return (this.statements.deployment.get() as { id: string }).id;
  }

  async unresolvedHeuristics(): Promise<number> {
    return (this.statements.unresolvedHeuristics.get() as { n: number }).n;
  }

  private schedule(when: 'soon' | 'later'): void {
    this.queue.schedule(when);
  }

  private flushScheduledBatch(): void {
    if (this.closed) return;
    try {
      this.flushBatch();
    } catch (error) {
      this.options.onError?.(error as Error);
    }
    if (this.queue.pending.size > 0 || this.pendingHistory.size > 0) {
      this.schedule(this.queue.hasForced() ? 'soon' : 'later');
    }
  }

  async flush(): Promise<void> {
    this.flushNow();
  }

  /** Writes everything queued, in this turn: SQLite writes synchronously. */
  private flushNow(): void {
    // Bounded: records that fail and go back in the queue wait for a later flush.
    const batches = Math.max(
      Math.ceil(this.queue.pending.size / this.options.batchRecordsMax),
      this.pendingHistory.size > 0 ? 1 : 0,
    );
    for (let n = batches; n > 0; n--) this.flushBatch();
  }

  /** Writes up to maxBatchRecords queued snapshots in one SQLite transaction. */
  private flushBatch(): void {
    if (this.queue.pending.size === 0 && this.pendingHistory.size === 0) return;
    const batch = this.queue.take(this.options.batchRecordsMax);
    const history = this.pendingHistory;
    this.pendingHistory = new Map();
    try {
      this.write(batch, history);
      return;
    } catch (error) {
      // History waits for the next flush, ahead of anything queued since.
      for (const [txId, entries] of this.pendingHistory) history.set(txId, [...(history.get(txId) ?? []), ...entries]);
      this.pendingHistory = history;
      if (batch.length === 0) throw error;
      if (batch.length === 1) {
        if (this.failed(batch[0] as Pending, error as Error)) throw error;
        return;
      }
    }
    // One record the log refuses must not sink the rest of the batch: write
    // them one by one, so only what really cannot be written fails.
    let first: Error | null = null;
    for (const entry of batch) {
      try {
        this.write([entry], NO_HISTORY);
      } catch (e) {
        if (this.failed(entry, e as Error)) first ??= e as Error;
      }
    }
    if (first) throw first;
  }

  /** One SQLite transaction; its forced writers hear once the WAL is fsynced after it. */
  private write(batch: Pending[], history: ReadonlyMap<string, HistoryEntry[]>): void {
    const startedAt = performance.now();
    this.db.transaction(() => {
      for (const entry of batch) this.store(entry.tx);
      for (const [txId, entries] of history)
        this.statements.appendHistory.run({ txId, entries: JSON.stringify(entries) });
    })();
    const forced = batch.some((e) => e.forced);
    this.options.onFlush?.({ durationMs: performance.now() - startedAt, records: batch.length, forced });
    // One fsync for the whole batch: added one entry at a time, the first
    // would start it alone.
    if (forced) this.wal.add(batch.flatMap((e) => e.waiters));
    for (const entry of batch) for (const cb of entry.callbacks) cb();
  }

  /**
   * A record that is not on disk. Forced writers hear of it (their caller gets
   * an error; nothing was promised). A lazy record goes back in the queue,
   * behind anything newer, when the failure may pass (a full disk, an I/O
   * error); one the log refuses outright would fail forever and is dropped,
   * loudly: recovery works from what is on disk, which is where it stood.
   * Returns whether the caller still has a failure to report.
   */
  private failed(entry: Pending, error: Error): boolean {
    for (const w of entry.waiters) w.reject(error);
    if (entry.forced) return true;
    const code = (error as Error & { code?: string }).code ?? '';
    if (TRANSIENT.test(code)) {
      if (!this.queue.pending.has(entry.tx.id)) this.queue.pending.set(entry.tx.id, { ...entry, waiters: [] });
      return true;
    }
    this.options.onError?.(
      new LogUnusableError(`dropped a record of ${entry.tx.id} the log refuses: ${error.message}`),
    );
    return false;
  }

  private store(tx: Transaction): void {
    this.statements.upsert.run({
      id: tx.id,
      state: tx.state,
      outcome: tx.outcome,
      abort_reason: tx.abortReason,
      one_shot: tx.oneShot ? 1 : 0,
      created_at_ms: tx.createdAtMs,
      deadline_ms: tx.deadlineMs,
      decided_at_ms: tx.decidedAtMs,
      finished_at_ms: tx.finishedAtMs,
      idempotency_key: tx.idempotencyKey,
      request_hash: tx.requestHash,
      metadata: tx.metadataJson,
      trace_parent: tx.traceParent,
      caller: tx.callerId ?? null,
      began_by: tx.beganBy,
      participants: participantsJson(tx),
    });
    if (tx.outcome !== null) {
      for (const p of tx.participants) {
        if (p.heuristic !== null && p.heuristic !== tx.outcome) {
          this.statements.reportHeuristic.run(tx.id, p.name, p.heuristic, tx.finishedAtMs ?? tx.decidedAtMs);
        }
      }
    }
    // Payloads can only be added while the transaction is active (begin,
    // enlist); later snapshots need not look at them again.
    if (tx.state === 'active') {
      for (const p of tx.participants) {
        if (p.payloadJson !== null) this.statements.insertPayload.run(tx.id, p.name, p.payloadJson);
      }
    }
    // Finished (every participant answered, a heuristic included): nothing
    // will be prepared again, and a transaction with an unresolved heuristic
    // outlives retention until an operator resolves it (issue 23: 100
    // one-shots of 1 MB kept 96 MB on disk).
    if (tx.finishedAtMs !== null) this.statements.deletePayloads.run(tx.id);
  }

  async get(id: string): Promise<Transaction | undefined> {
    return this.getNow(id);
  }

  /** The same read, synchronously: for callers that cannot wait (a test's hook inside an fsync). */
  getNow(id: string): Transaction | undefined {
    const row = this.statements.get.get(id) as TxRow | undefined;
    return row && fromRow(row, null);
  }

  async findByIdempotencyKey(key: string): Promise<Transaction | undefined> {
    const row = this.statements.byKey.get(key) as TxRow | undefined;
    if (row) return fromRow(row, null);
    const kept = this.statements.keptKey.get(key) as { snapshot: string } | undefined;
    return kept && fromRow(JSON.parse(kept.snapshot) as TxRow, null);
  }

  async keptOutcome(id: string): Promise<'commit' | 'forgotten' | null> {
    const row = this.statements.keptOutcome.get({ id }) as { committed: number; forgotten: number };
    if (row.committed === 1) return 'commit';
    return row.forgotten === 1 ? 'forgotten' : null;
  }

  async list(query: ListQuery): Promise<ListPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.state) {
      where.push('state = ?');
      params.push(query.state);
    }
    if (query.after) {
      where.push('id < ?');
      params.push(query.after);
    }
    if (query.createdBeforeMs != null) {
      where.push('created_at_ms < ?');
      params.push(query.createdBeforeMs);
    }
    if (query.participant != null) {
      where.push("EXISTS (SELECT 1 FROM json_each(participants) WHERE json_extract(value, '$.name') = ?)");
      params.push(query.participant);
    }
    if (query.heuristicUnresolved) {
      where.push('id IN (SELECT tx_id FROM heuristics WHERE resolved_at_ms IS NULL)');
    }
    const sql = `SELECT * FROM transactions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, query.limit + 1) as TxRow[];
    const more = rows.length > query.limit;
    const page = more ? rows.slice(0, query.limit) : rows;
    return {
      transactions: page.map((r) => fromRow(r, null)),
      next: more ? (page[page.length - 1]?.id ?? null) : null,
    };
  }

  async loadUnfinished(shards?: readonly number[]): Promise<Transaction[]> {
    const wanted = shards && new Set(shards);
    const rows = (this.statements.unfinished.all() as TxRow[]).filter(
      (row) => wanted === undefined || wanted.has(shardOfId(row.id) ?? -1),
    );
    return rows.map((row) => {
      // Only an active transaction may still ask for prepares; the payloads
      // of the others stay on disk, so a log full of large ones cannot fill
      // the heap at start.
      if (row.state !== 'active') return fromRow(row, null);
      const payloads = new Map<string, string>();
      for (const p of this.statements.payloads.all(row.id) as Array<{ name: string; payload: string }>) {
        payloads.set(p.name, p.payload);
      }
      return fromRow(row, payloads);
    });
  }

  async compact(finishedBeforeMs: number, keysFinishedBeforeMs: number, maxRows: number): Promise<number> {
    const rows = this.statements.finishedBefore.all(finishedBeforeMs, maxRows) as TxRow[];
    this.db.transaction(() => {
      for (const row of rows) {
        const finishedAtMs = row.finished_at_ms as number;
        if (row.idempotency_key !== null && finishedAtMs >= keysFinishedBeforeMs) {
          this.statements.keepKey.run(row.idempotency_key, finishedAtMs, JSON.stringify(row));
        }
        // Every committed one, even one already past the keys' retention:
        // its expiry below is what moves the horizon over its id.
        if (row.outcome === 'commit') this.statements.keepCommitted.run(row.id, finishedAtMs);
        this.statements.deleteTx.run(row.id);
        this.statements.deletePayloads.run(row.id);
        this.statements.deleteHistory.run(row.id);
        this.statements.deleteHeuristics.run(row.id);
      }
      this.statements.expireKeys.run(keysFinishedBeforeMs, maxRows);
      const expired = this.statements.expiredCommitted.all(keysFinishedBeforeMs, maxRows) as Array<{ id: string }>;
      let newest: string | null = null;
      for (const { id } of expired) {
        this.statements.deleteCommitted.run(id);
        if (newest === null || id > newest) newest = id;
      }
      if (newest !== null) this.statements.raiseHorizon.run({ id: newest });
    })();
    return rows.length;
  }

  async close(): Promise<void> {
    this.closeNow();
  }

  /** Closes in this turn, so that a caller that does not wait (a shutdown timer) still releases the lock. */
  closeNow(): void {
    if (this.closed) return;
    try {
      this.flushNow();
    } catch (error) {
      // What cannot be written now is lazy (forced writers were told): the
      // next start recovers from what is on disk. Close regardless, so the
      // lock is released.
      this.options.onError?.(error as Error);
    }
    this.closed = true;
    this.queue.cancel();
    try {
      this.wal.close();
    } catch (error) {
      this.options.onError?.(error as Error);
    }
    this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new LogUnusableError('the decision log is closed');
    if (this.wal.failed) throw this.wal.failed;
  }
}

function open(dataDir: string): Database.Database {
  try {
    // A directory made here is named in its parent only once the parent is synced.
    const created = fs.mkdirSync(dataDir, { recursive: true });
    if (created !== undefined) syncDirectory(path.dirname(created));
  } catch (error) {
    throw new LogUnusableError(`cannot create the data directory ${dataDir}: ${(error as Error).message}`);
  }
  const file = path.join(dataDir, LOG_FILE);
  refuseReadOnly(dataDir, file);
  let db: Database.Database;
  try {
    // timeout 0: a log held by another process is refused at once, not waited for.
    db = new Database(file, { timeout: 0 });
  } catch (error) {
    throw new LogUnusableError(`cannot open the decision log ${file}: ${(error as Error).message}`);
  }
  try {
    // EXCLUSIVE locking: this process holds the file's lock from its first
    // write until it exits (the OS drops it on any exit, SIGKILL included), so
    // a second commitd on the same directory is refused instead of corrupting
    // the log.
    db.pragma('locking_mode = EXCLUSIVE');
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new LogUnusableError(`cannot switch the decision log ${file} to WAL mode (got ${mode})`);
    db.exec('BEGIN EXCLUSIVE; COMMIT');
    // FULL while opening (migrations are rare and want no special case), NORMAL after.
    db.pragma('synchronous = FULL');
    // Keep the WAL from growing without bound between checkpoints.
    db.pragma('journal_size_limit = 67108864');
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new LogUnusableError(`the decision log ${file} failed its integrity check: ${check}`);
    try {
      migrate(db);
    } catch (error) {
      // migrate's refusals (a schema newer than this commitd) do not know the file.
      if (error instanceof LogUnusableError) {
        throw new LogUnusableError(`cannot use the decision log ${file}: ${error.message}`);
      }
      throw error;
    }
    refuseDamagedRecords(db, file);
    db.pragma('synchronous = NORMAL');
    // The WAL file exists by now. SQLite fsyncs its directory entry only at
    // its own first sync of the WAL, which at synchronous=NORMAL waits for the
    // first checkpoint; the fdatasyncs that acknowledge forced writes do not
    // cover it. The frames are only as durable as the file's name.
    syncDirectory(dataDir);
    return db;
  } catch (error) {
    db.close();
    const e = error as Error & { code?: string };
    if (e.code === 'SQLITE_BUSY' || e.code === 'SQLITE_LOCKED') {
      throw new LogLockedError(
        `the decision log ${file} is locked by another process: is another commitd running on ${dataDir}?`,
      );
    }
    if (e instanceof LogUnusableError) throw e;
    if (e.code?.startsWith('SQLITE_READONLY')) {
      throw new LogUnusableError(`the decision log ${file} is read-only, commitd cannot write it: ${e.message}`);
    }
    throw new LogUnusableError(`the decision log ${file} is unusable: ${e.message}`);
  }
}

function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * SQLite opens a file it may not write read-only, without a word, and the
 * first write then fails as "disk I/O error" (the exclusive lock cannot be
 * taken on a read-only descriptor) or "attempt to write a readonly database",
 * naming neither the cause nor the file. commitd cannot run on a log it
 * cannot write (no decision could be made durable), so say so up front. The
 * directory must be writable too: the WAL file is created and removed there.
 * (access(2) also reports a read-only mount, EROFS.)
 */
function refuseReadOnly(dataDir: string, file: string): void {
  const need = [
    { at: dataDir, mode: fs.constants.W_OK, what: `the data directory ${dataDir}` },
    { at: file, mode: fs.constants.R_OK | fs.constants.W_OK, what: file },
    { at: `${file}-wal`, mode: fs.constants.R_OK | fs.constants.W_OK, what: `${file}-wal` },
  ];
  for (const { at, mode, what } of need) {
    if (at !== dataDir && !fs.existsSync(at)) continue;
    try {
      fs.accessSync(at, mode);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new LogUnusableError(
        `the decision log ${file} cannot be written: ${what} is read-only for this process (${code})`,
      );
    }
  }
}

/**
 * quick_check sees the structure of the b-trees, not what a record holds:
 * garbage torn into the bytes of a record passes it and would be read back as
 * data (a participant list that is not JSON, found only when a request read
 * it). Look at every record once, at start, in SQLite's own C code. This
 * cannot catch garbage that happens to form valid values: SQLite keeps no
 * checksums of its pages.
 */
function refuseDamagedRecords(db: Database.Database, file: string): void {
  const damaged = db
    .prepare(
      `SELECT id FROM transactions WHERE
         state NOT IN (${TX_STATES.map((s) => `'${s}'`).join(', ')})
         OR (outcome IS NOT NULL AND outcome NOT IN ('commit', 'abort'))
         OR NOT json_valid(participants) OR json_type(participants) != 'array'
         OR (metadata IS NOT NULL AND NOT json_valid(metadata))
       UNION ALL SELECT tx_id FROM payloads WHERE NOT json_valid(payload)
       UNION ALL SELECT tx_id FROM history WHERE NOT json_valid(entries)
       LIMIT 1`,
    )
    .get() as { id: string } | undefined;
  if (damaged) {
    throw new LogUnusableError(
      `the decision log ${file} holds a damaged record (transaction ${JSON.stringify(damaged.id)}): ` +
        "it passed SQLite's integrity check, but its contents are not what commitd writes",
    );
  }
}
