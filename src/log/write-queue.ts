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

export class WriteQueue {
  readonly pending = new Map<string, Pending>();
  private scheduled: 'none' | 'soon' | 'later' = 'none';
  private laterTimer: NodeJS.Timeout | null = null;

  /** `due` runs once a scheduled batch is due. */
  constructor(private readonly due: () => void) {}

  enqueue(tx: Transaction, forced: boolean, epoch: number | null = null): Pending {
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

  schedule(when: 'soon' | 'later', laterDelayMs: number): void {
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
    this.due();
  }
}
