// Makes what SQLite wrote to its WAL durable, off the event loop.
//
// The log commits every batch with synchronous=NORMAL: the frames are in the
// WAL file (safe from a crash of the process) but not yet on disk (not safe
// from a crash of the machine). Forced writers must not hear before they are,
// so their waiters queue here and one fdatasync of the WAL, run on libuv's
// thread pool, covers every frame written before it started. While it runs
// the event loop goes on, and the batches written meanwhile share the next
// one: a second level of group commit, on top of the log's per-turn batches.
//
// Why this is as durable as synchronous=FULL: fdatasync(2) covers every write
// to the file issued before it, from any descriptor; in WAL mode SQLite itself
// syncs the WAL before each checkpoint, the database after it, and the WAL
// header when the WAL starts over, so frames that leave the WAL are durable in
// the database before they can be overwritten.

import fs from 'node:fs';
import { LogUnusableError } from './decision-log.js';

export interface SyncWaiter {
  resolve(): void;
  reject(error: Error): void;
}

export interface SyncStats {
  readonly durationMs: number;
  /** Forced records this fsync made durable. */
  readonly waiters: number;
}

export type Fdatasync = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void;

/** What tests replace: hold or fail fsyncs, and whether a lone writer fsyncs inline. */
export interface WalSyncHooks {
  /** fs.fdatasync unless given. */
  readonly fdatasync?: Fdatasync;
  /** fs.fdatasyncSync unless given. */
  readonly fdatasyncSync?: (fd: number) => void;
  /** Batches of at most this many waiters fsync inline when no fsync runs (default 1; tests set 0). */
  readonly inlineMaxWaiters?: number;
}

export interface WalSyncOptions extends WalSyncHooks {
  readonly onSync?: (stats: SyncStats) => void;
  /**
   * An fsync failed: what it covered may or may not be on disk, and the page
   * cache can no longer be trusted to say which. The only safe course is to
   * stop and let recovery read what the disk holds (as PostgreSQL does).
   */
  readonly onFailure: (error: LogUnusableError) => void;
}

export class WalSync {
  private readonly fd: number;
  private waiting: SyncWaiter[] = [];
  private inFlight = false;
  private closing = false;
  private released = false;
  private failure: LogUnusableError | null = null;

  constructor(
    private readonly walFile: string,
    private readonly options: WalSyncOptions,
  ) {
    // r+: fdatasync needs no write access on Linux, but other systems do.
    this.fd = fs.openSync(walFile, 'r+');
  }

  get failed(): LogUnusableError | null {
    return this.failure;
  }

  /** `waiters` hear once everything written to the WAL so far is on disk. */
  add(waiters: readonly SyncWaiter[]): void {
    if (this.failure) {
      for (const w of waiters) w.reject(this.failure);
      return;
    }
    for (const w of waiters) this.waiting.push(w);
    // A lone writer with no fsync running is a quiet log: blocking for one
    // fsync costs the event loop nothing then, and saves the hop through the
    // thread pool (about 0.1 ms on a transaction's two forced writes). Under
    // load an fsync is nearly always running, so batches go the async way.
    if (!this.inFlight && this.waiting.length <= (this.options.inlineMaxWaiters ?? 1)) {
      try {
        this.syncNow();
      } catch {
        // Its waiters were rejected and the failure reported.
      }
      return;
    }
    this.start();
  }

  private start(): void {
    if (this.inFlight || this.closing || this.waiting.length === 0) return;
    const batch = this.waiting;
    this.waiting = [];
    this.inFlight = true;
    const startedAt = performance.now();
    (this.options.fdatasync ?? fs.fdatasync)(this.fd, (error) => {
      this.inFlight = false;
      if (error) this.fail(error, batch);
      else this.done(batch, startedAt);
      if (this.closing) this.release();
      else this.start();
    });
  }

  private done(batch: SyncWaiter[], startedAt: number): void {
    this.options.onSync?.({ durationMs: performance.now() - startedAt, waiters: batch.length });
    for (const w of batch) w.resolve();
  }

  private fail(error: Error, batch: SyncWaiter[]): void {
    this.failure ??= new LogUnusableError(`fsync of the decision log's WAL ${this.walFile} failed: ${error.message}`);
    // Told first, so a process that stops on it stops before anyone acts on a rejection.
    this.options.onFailure(this.failure);
    const all = [...batch, ...this.waiting];
    this.waiting = [];
    for (const w of all) w.reject(this.failure);
  }

  /** Blocks until everything written is on disk; every waiter queued so far hears. */
  syncNow(): void {
    if (this.failure) throw this.failure;
    if (this.waiting.length === 0) return;
    const batch = this.waiting;
    this.waiting = [];
    const startedAt = performance.now();
    try {
      (this.options.fdatasyncSync ?? fs.fdatasyncSync)(this.fd);
    } catch (error) {
      this.fail(error as Error, batch);
      throw this.failure;
    }
    this.done(batch, startedAt);
  }

  /** Syncs what is queued; the descriptor is closed once no fsync runs on it. */
  close(): void {
    if (this.closing) return;
    try {
      this.syncNow();
    } finally {
      this.closing = true;
      if (!this.inFlight) this.release();
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    fs.closeSync(this.fd);
  }
}
