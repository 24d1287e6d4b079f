// What both logs batch from (group commit): the newest queued snapshot of
// each transaction with whoever waits for it, and when the next batch is due.
// A forced write makes it due at the end of this turn of the event loop, so
// everything the turn writes joins it; lazy ones wait a little for company.

import type { Transaction } from '../protocol/types.js';

export interface Pending {
  tx: Transaction;
  forced: boolean;
  /**
   * With several instances: the epoch the writer owned the transaction's
   * shard under when it queued this snapshot (null: it did not own it). The
   * store takes the record only under that epoch, never a later one: a
   * snapshot queued before a shard moved away and back is not the new
   * ownership's to write.
   */
  epoch: number | null;
  waiters: Array<{ resolve: () => void; reject: (e: Error) => void }>;
  callbacks: Array<() => void>;
}

export interface WriteQueueOptions {
  /** Runs once a scheduled batch is due. */
  readonly due: () => void;
  /**
   * Called for every record before it is queued: throws when the log takes
   * no more writes (closed, failed); returns the record's epoch (null
   * without a fence).
   */
  readonly admit: (tx: Transaction) => number | null;
  /** How long lazy records may wait for a forced one to ride along with. */
  readonly lazyFlushDelayMs: number;
  /** Most records one batch carries: a full batch is due at once. */
  readonly batchRecordsMax: number;
}

export class WriteQueue {
  readonly pending = new Map<string, Pending>();
  private scheduled: 'none' | 'soon' | 'later' = 'none';
  private laterTimer: NodeJS.Timeout | null = null;

  constructor(private readonly o: WriteQueueOptions) {}

  /** DecisionLog.writeForced: resolves once the record is durable; the batch is due at the end of this turn. */
  writeForced(tx: Transaction): Promise<void> {
    return new Promise((resolve, reject) => {
      this.enqueue(tx, true).waiters.push({ resolve, reject });
      this.schedule('soon');
    });
  }

  /** DecisionLog.writeLazy: rides along with the next batch; `onWritten` runs once it is written. */
  writeLazy(tx: Transaction, onWritten?: () => void): void {
    const entry = this.enqueue(tx, false);
    if (onWritten) entry.callbacks.push(onWritten);
    this.schedule(this.pending.size >= this.o.batchRecordsMax ? 'soon' : 'later');
  }

  private enqueue(tx: Transaction, forced: boolean): Pending {
    const epoch = this.o.admit(tx);
    const entry = this.pending.get(tx.id);
    if (entry) {
      // A newer snapshot replaces the queued one: it holds everything the
      // older one did, since a transaction's state only moves forward.
      entry.tx = tx;
      entry.forced ||= forced;
      entry.epoch = epoch;
      return entry;
    }
    const created: Pending = { tx, forced, epoch, waiters: [], callbacks: [] };
    this.pending.set(tx.id, created);
    return created;
  }

  hasForced(): boolean {
    for (const entry of this.pending.values()) if (entry.forced) return true;
    return false;
  }

  /** Takes up to `max` records off the queue, oldest first. */
  take(max: number): Pending[] {
    const batch: Pending[] = [];
    for (const [id, entry] of this.pending) {
      batch.push(entry);
      this.pending.delete(id);
      if (batch.length >= max) break;
    }
    return batch;
  }

  schedule(when: 'soon' | 'later', laterDelayMs = this.o.lazyFlushDelayMs): void {
    if (this.scheduled === 'soon') return;
    if (when === 'soon') {
      this.cancel();
      this.scheduled = 'soon';
      // setImmediate: everything the current turn of the event loop writes
      // (all the answers that arrived together) joins this batch.
      setImmediate(() => this.fire());
      return;
    }
    if (this.scheduled === 'later') return;
    this.scheduled = 'later';
    this.laterTimer = setTimeout(() => this.fire(), laterDelayMs);
    this.laterTimer.unref();
  }

  /** Stops a lazy batch's timer (a batch due at the end of this turn still runs `due`). */
  cancel(): void {
    if (this.laterTimer) clearTimeout(this.laterTimer);
    this.laterTimer = null;
  }

  private fire(): void {
    this.scheduled = 'none';
    this.laterTimer = null;
    this.o.due();
  }
}
