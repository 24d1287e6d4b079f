// The decision log of the simulation: the disk as a map of the last flushed
// snapshot of each transaction. Writes queue until a flush, which happens
// after a random delay (group commit); a coordinator crash loses whatever was
// not flushed, exactly what a process crash does to the real log. Flushes are
// also where "a decision is never rewritten" and "commit only on unanimous
// yes" are checked.

import type { DecisionLog, HeuristicResolution, ListPage, ListQuery } from '../../src/log/decision-log.js';
import type { HistoryEntry } from '../../src/protocol/history.js';
import type { Transaction } from '../../src/protocol/types.js';
import type { Checks } from './checks.js';
import type { World } from './world.js';

interface Pending {
  tx: Transaction;
  waiters: Array<() => void>;
  callbacks: Array<() => void>;
}

export interface SimLogBugs {
  /** Planted bug: a forced write reports durable at once, before any flush. */
  readonly ackBeforeFlush?: boolean;
  /** Planted bug: compaction forgets decided transactions not yet acknowledged. */
  readonly forgetUnfinished?: boolean;
}

export class SimLog implements DecisionLog {
  readonly durable = new Map<string, Transaction>();
  /** Every transaction ever forgotten, with the outcome it had. */
  readonly forgotten = new Map<string, Transaction>();
  /** Idempotency keys of forgotten transactions, with the snapshot kept for them (the SQLite log's idempotency_keys). */
  readonly keptKeys = new Map<string, Transaction>();
  /** History on disk and queued, by transaction (as the SQLite log's history table). */
  readonly durableHistory = new Map<string, HistoryEntry[]>();
  private pendingHistory = new Map<string, HistoryEntry[]>();
  /** Contradicting heuristics on disk, by transaction and participant; resolved ones carry their resolution. */
  readonly heuristics = new Map<string, Map<string, HeuristicResolution | null>>();
  private pending = new Map<string, Pending>();
  private flushEpoch = 0;
  private flushScheduled = false;
  /** Set by the simulator: crash the coordinator right after a flush, before anyone hears of it. */
  crashAfterFlush: (() => boolean) | null = null;
  /** Set by the simulator: extra milliseconds a flush takes (a slow disk), 0 for none. */
  slowFlushMs: () => number = () => 0;

  constructor(
    private readonly world: World,
    private readonly checks: Checks,
    private readonly flushDelayMsMax: number,
    private readonly bugs: SimLogBugs = {},
  ) {}

  writeForced(tx: Transaction): Promise<void> {
    return new Promise((resolve) => {
      this.enqueue(tx).waiters.push(resolve);
      if (this.bugs.ackBeforeFlush) resolve();
    });
  }

  writeLazy(tx: Transaction, onWritten?: () => void): void {
    const entry = this.enqueue(tx);
    if (onWritten) entry.callbacks.push(onWritten);
  }

  appendHistory(txId: string, entries: readonly HistoryEntry[]): void {
    if (entries.length === 0) return;
    this.pendingHistory.set(txId, [...(this.pendingHistory.get(txId) ?? []), ...entries]);
    this.scheduleFlush();
  }

  async history(txId: string): Promise<HistoryEntry[]> {
    return [...(this.durableHistory.get(txId) ?? []), ...(this.pendingHistory.get(txId) ?? [])];
  }

  async resolveHeuristics(
    txId: string,
    participant: string | null,
    resolution: Omit<HeuristicResolution, 'participant'>,
  ): Promise<string[]> {
    const resolved: string[] = [];
    for (const [name, current] of this.heuristics.get(txId) ?? []) {
      if (current !== null || (participant !== null && name !== participant)) continue;
      this.heuristics.get(txId)?.set(name, { ...resolution, participant: name });
      resolved.push(name);
    }
    return resolved;
  }

  async resolutions(txId: string): Promise<HeuristicResolution[]> {
    return [...(this.heuristics.get(txId)?.values() ?? [])].filter((r): r is HeuristicResolution => r !== null);
  }

  async unresolvedHeuristics(): Promise<number> {
    let n = 0;
    for (const byName of this.heuristics.values()) for (const r of byName.values()) if (r === null) n++;
    return n;
  }

  private hasUnresolvedHeuristic(txId: string): boolean {
    return [...(this.heuristics.get(txId)?.values() ?? [])].some((r) => r === null);
  }

  private enqueue(tx: Transaction): Pending {
    let entry = this.pending.get(tx.id);
    if (entry) entry.tx = tx;
    else {
      entry = { tx, waiters: [], callbacks: [] };
      this.pending.set(tx.id, entry);
    }
    this.scheduleFlush();
    return entry;
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      const epoch = this.flushEpoch;
      this.world.at(this.world.rng.int(0, this.flushDelayMsMax) + this.slowFlushMs(), () => {
        if (epoch === this.flushEpoch) this.flushNow();
      });
    }
  }

  async flush(): Promise<void> {
    this.flushNow();
  }

  private flushNow(): void {
    this.flushScheduled = false;
    const batch = [...this.pending.values()];
    this.pending.clear();
    for (const { tx } of batch) this.store(tx);
    for (const [txId, entries] of this.pendingHistory) {
      // As the SQLite log: history is kept only with its transaction.
      if (!this.durable.has(txId)) continue;
      this.durableHistory.set(txId, [...(this.durableHistory.get(txId) ?? []), ...entries]);
    }
    this.pendingHistory.clear();
    if (this.crashAfterFlush?.()) return; // durable, and nobody was told
    for (const entry of batch) {
      for (const w of entry.waiters) w();
      for (const cb of entry.callbacks) cb();
    }
  }

  /** The process died: everything not flushed is gone. */
  crash(): void {
    this.pending.clear();
    this.pendingHistory.clear();
    this.flushScheduled = false;
    this.flushEpoch++;
  }

  private store(tx: Transaction): void {
    const before = this.durable.get(tx.id);
    if (before?.outcome && before.outcome !== tx.outcome) {
      this.checks.fail('an outcome, once decided, never changes', `${tx.id}: ${before.outcome} -> ${tx.outcome}`);
    }
    if (tx.outcome === 'commit' && !tx.participants.every((p) => p.vote === 'yes' || p.vote === 'read-only')) {
      this.checks.fail(
        'commit is decided only when every participant voted yes or read-only',
        `${tx.id}: votes ${tx.participants.map((p) => p.vote).join(',')}`,
      );
    }
    if (tx.outcome !== null) {
      for (const p of tx.participants) {
        if (p.heuristic === null || p.heuristic === tx.outcome) continue;
        const byName = this.heuristics.get(tx.id) ?? new Map<string, HeuristicResolution | null>();
        if (!byName.has(p.name)) byName.set(p.name, null);
        this.heuristics.set(tx.id, byName);
      }
    }
    if (before !== undefined && before.traceParent !== tx.traceParent) {
      this.checks.fail(
        'a transaction keeps the traceparent it was begun in, through crashes and recovery',
        `${tx.id}: ${before.traceParent} -> ${tx.traceParent}`,
      );
    }
    // What the SQLite log keeps: no in-memory-only fields.
    this.durable.set(tx.id, {
      ...tx,
      commitRequested: false,
      participants: tx.participants.map((p) => ({ ...p, attempts: 0, lastError: null })),
    });
  }

  async get(id: string): Promise<Transaction | undefined> {
    return this.durable.get(id);
  }

  async findByIdempotencyKey(key: string): Promise<Transaction | undefined> {
    for (const tx of this.durable.values()) if (tx.idempotencyKey === key) return tx;
    return this.keptKeys.get(key);
  }

  async list(query: ListQuery): Promise<ListPage> {
    const all = [...this.durable.values()]
      .filter(
        (tx) =>
          (query.state === null || tx.state === query.state) &&
          (query.after === null || tx.id < query.after) &&
          (query.createdBeforeMs == null || tx.createdAtMs < query.createdBeforeMs) &&
          (query.participant == null || tx.participants.some((p) => p.name === query.participant)) &&
          (!query.heuristicUnresolved || this.hasUnresolvedHeuristic(tx.id)),
      )
      .sort((a, b) => (a.id < b.id ? 1 : -1));
    const page = all.slice(0, query.limit);
    return { transactions: page, next: all.length > query.limit ? (page.at(-1)?.id ?? null) : null };
  }

  async loadUnfinished(): Promise<Transaction[]> {
    // As the SQLite log: payloads only for active transactions.
    return [...this.durable.values()]
      .filter((tx) => tx.finishedAtMs === null)
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((tx) =>
        tx.state === 'active' ? tx : { ...tx, participants: tx.participants.map((p) => ({ ...p, payloadJson: null })) },
      );
  }

  async compact(finishedBeforeMs: number, keysFinishedBeforeMs: number, maxRows: number): Promise<number> {
    let n = 0;
    for (const tx of [...this.durable.values()]) {
      if (n >= maxRows) break;
      const finished = tx.finishedAtMs !== null && tx.finishedAtMs < finishedBeforeMs;
      const forgettable = finished || (this.bugs.forgetUnfinished === true && tx.outcome !== null);
      if (!forgettable || this.hasUnresolvedHeuristic(tx.id)) continue;
      if (!tx.participants.every((p) => p.acknowledged)) {
        this.checks.fail(
          'a transaction is forgotten only after every participant acknowledged',
          `${tx.id} forgotten while ${tx.participants.filter((p) => !p.acknowledged).map((p) => p.name)} had not acknowledged`,
        );
      }
      this.durable.delete(tx.id);
      this.durableHistory.delete(tx.id);
      this.heuristics.delete(tx.id);
      this.forgotten.set(tx.id, tx);
      if (tx.idempotencyKey !== null && (tx.finishedAtMs ?? 0) >= keysFinishedBeforeMs) {
        this.keptKeys.set(tx.idempotencyKey, tx);
      }
      n++;
    }
    let expired = 0;
    for (const [key, tx] of this.keptKeys) {
      if (expired >= maxRows) break;
      if ((tx.finishedAtMs ?? 0) < keysFinishedBeforeMs) {
        this.keptKeys.delete(key);
        expired++;
      }
    }
    return n;
  }

  async close(): Promise<void> {}
}
