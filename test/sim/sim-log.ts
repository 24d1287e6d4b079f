// The decision log of the simulation: the disk as a map of the last flushed
// snapshot of each transaction. Writes queue until a flush, which happens
// after a random delay (group commit); a coordinator crash loses whatever was
// not flushed, exactly what a process crash does to the real log. Flushes are
// also where "a decision is never rewritten" and "commit only on unanimous
// yes" are checked.
//
// Several instances (src/cluster): each coordinator writes through a handle
// that carries the epoch it owns the transactions under. A takeover bumps
// the log's epoch: from then on a flush refuses what an older epoch queued,
// as the store's fence does (the write's own transaction checks the shard's
// epoch), and tells that writer, as the real log tells its member.

import {
  type DecisionLog,
  type HeuristicResolution,
  type ListPage,
  type ListQuery,
  WriteRefusedError,
} from '../../src/log/decision-log.js';
import type { HistoryEntry } from '../../src/protocol/history.js';
import { shardOfId } from '../../src/protocol/transaction-ids.js';
import type { Transaction } from '../../src/protocol/types.js';
import type { Checks } from './checks.js';
import type { World } from './world.js';

interface Pending {
  tx: Transaction;
  /** The epoch of the writer that queued it. */
  epoch: number;
  waiters: Array<{ resolve: () => void; reject: (error: Error) => void }>;
  callbacks: Array<() => void>;
}

/** Told of each record of its epoch that a flush refused (fenced). */
type Refused = (tx: Transaction) => void;

export interface SimLogBugs {
  /** Planted bug: a forced write reports durable at once, before any flush. */
  readonly ackBeforeFlush?: boolean;
  /** Planted bug: compaction forgets decided transactions not yet acknowledged. */
  readonly forgetUnfinished?: boolean;
  /** Planted bug: no fence: a stale instance's records are stored as the owner's are. */
  readonly unfenced?: boolean;
}

export class SimLog implements DecisionLog {
  readonly durable = new Map<string, Transaction>();
  /** Every transaction ever forgotten, with the outcome it had. */
  readonly forgotten = new Map<string, Transaction>();
  /** Idempotency keys of forgotten transactions, with the snapshot kept for them (the SQLite log's idempotency_keys). */
  readonly keptKeys = new Map<string, Transaction>();
  /** Committed ids of forgotten transactions, with their finish time (the SQLite log's committed table). */
  readonly keptCommitted = new Map<string, number>();
  /** The newest id whose kept outcome expired: an unknown id not after it is "forgotten". */
  forgottenThroughId: string | null = null;
  /** History on disk and queued, by transaction (as the SQLite log's history table). */
  readonly durableHistory = new Map<string, HistoryEntry[]>();
  /** Queued history by `epoch|txId`: a stale writer's goes nowhere. */
  private pendingHistory = new Map<string, HistoryEntry[]>();
  /** The epoch the transactions are owned under now; a takeover bumps it. */
  ownerEpoch = 0;
  private readonly refusedHooks = new Map<number, Refused>();
  /** Contradicting heuristics on disk, by transaction and participant; resolved ones carry their resolution. */
  readonly heuristics = new Map<string, Map<string, HeuristicResolution | null>>();
  /** Queued records by `epoch|txId`. */
  private pending = new Map<string, Pending>();
  private flushEpoch = 0;
  private flushScheduled = false;
  /** Set by the simulator: crash the coordinator right after a flush, before anyone hears of it. */
  crashAfterFlush: (() => boolean) | null = null;
  /** Set by the simulator: a contradicting heuristic reached the disk (an operator may now resolve it). */
  onHeuristic: ((txId: string) => void) | null = null;
  /** Set by the simulator: extra milliseconds a flush takes (a slow disk), 0 for none. */
  slowFlushMs: () => number = () => 0;
  /**
   * Set by the simulator: check, before a transaction is forgotten, that each resolution has its history
   * entry. The coordinator writes that entry; the log contract drives the log without one.
   */
  checkResolutionsBeforeCompaction = false;

  constructor(
    private readonly world: World,
    private readonly checks: Checks,
    private readonly flushDelayMsMax: number,
    private readonly bugs: SimLogBugs = {},
  ) {}

  writeForced(tx: Transaction): Promise<void> {
    return this.writeForcedAt(tx, this.ownerEpoch);
  }

  writeLazy(tx: Transaction, onWritten?: () => void): void {
    this.writeLazyAt(tx, this.ownerEpoch, onWritten);
  }

  appendHistory(txId: string, entries: readonly HistoryEntry[]): void {
    this.appendHistoryAt(txId, entries, this.ownerEpoch);
  }

  /** Another instance takes the transactions over: what older epochs write from now on is refused. */
  takeover(): void {
    this.ownerEpoch++;
  }

  /** The log as one instance sees it: its writes carry `epoch`; `refused` hears of those a flush refuses. */
  handle(epoch: number, refused: Refused): DecisionLog {
    this.refusedHooks.set(epoch, refused);
    return {
      writeForced: (tx) => this.writeForcedAt(tx, epoch),
      writeLazy: (tx, onWritten) => this.writeLazyAt(tx, epoch, onWritten),
      appendHistory: (txId, entries) => this.appendHistoryAt(txId, entries, epoch),
      flush: () => this.flush(),
      get: (id) => this.get(id),
      findByIdempotencyKey: (key) => this.findByIdempotencyKey(key),
      keptOutcome: (id) => this.keptOutcome(id),
      list: (query) => this.list(query),
      history: (txId) => this.history(txId),
      resolveHeuristics: (txId, participant, resolution) => this.resolveHeuristics(txId, participant, resolution),
      resolutions: (txId) => this.resolutions(txId),
      unresolvedHeuristics: () => this.unresolvedHeuristics(),
      claimDeploymentId: (proposed) => this.claimDeploymentId(proposed),
      loadUnfinished: (shards) => this.loadUnfinished(shards),
      compact: (a, b, n) => this.compact(a, b, n),
      close: () => this.close(),
    };
  }

  private writeForcedAt(tx: Transaction, epoch: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.enqueue(tx, epoch).waiters.push({ resolve, reject });
      if (this.bugs.ackBeforeFlush) resolve();
    });
  }

  private writeLazyAt(tx: Transaction, epoch: number, onWritten?: () => void): void {
    const entry = this.enqueue(tx, epoch);
    if (onWritten) entry.callbacks.push(onWritten);
  }

  private appendHistoryAt(txId: string, entries: readonly HistoryEntry[], epoch: number): void {
    if (entries.length === 0) return;
    const key = `${epoch}|${txId}`;
    this.pendingHistory.set(key, [...(this.pendingHistory.get(key) ?? []), ...entries]);
    this.scheduleFlush();
  }

  async history(txId: string): Promise<HistoryEntry[]> {
    const queued = this.pendingHistory.get(`${this.ownerEpoch}|${txId}`) ?? [];
    return [...(this.durableHistory.get(txId) ?? []), ...queued];
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

  /** The store's deployment identity: the first one proposed. */
  private deploymentId: string | null = null;

  async claimDeploymentId(proposed: string): Promise<string> {
    this.deploymentId ??= proposed;
    return this.deploymentId;
  }

  async unresolvedHeuristics(): Promise<number> {
    let n = 0;
    for (const byName of this.heuristics.values()) for (const r of byName.values()) if (r === null) n++;
    return n;
  }

  /** An operator's resolve is applied once and in the history: one heuristic-resolved entry per resolution. */
  checkResolutionsRecorded(txId: string): void {
    const entries = this.durableHistory.get(txId) ?? [];
    for (const [name, resolution] of this.heuristics.get(txId) ?? []) {
      const recorded = entries.filter((e) => e.type === 'heuristic-resolved' && e.participant === name).length;
      if (recorded !== (resolution === null ? 0 : 1)) {
        this.checks.fail(
          "an operator's resolve is applied once and in the history",
          `${txId}: ${name} ${resolution === null ? 'unresolved' : 'resolved'}, ${recorded} heuristic-resolved entries`,
        );
      }
    }
  }

  private hasUnresolvedHeuristic(txId: string): boolean {
    return [...(this.heuristics.get(txId)?.values() ?? [])].some((r) => r === null);
  }

  private enqueue(tx: Transaction, epoch: number): Pending {
    const key = `${epoch}|${tx.id}`;
    let entry = this.pending.get(key);
    if (entry) entry.tx = tx;
    else {
      entry = { tx, epoch, waiters: [], callbacks: [] };
      this.pending.set(key, entry);
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
    const queued = [...this.pending.values()];
    this.pending.clear();
    // A stale writer's records are refused whole, as the store's fence does.
    const fenced = (entry: Pending) => entry.epoch !== this.ownerEpoch && !this.bugs.unfenced;
    const batch = queued.filter((entry) => !fenced(entry));
    const refused = queued.filter(fenced);
    for (const { tx } of batch) this.store(tx);
    for (const [key, entries] of this.pendingHistory) {
      const [epoch, txId] = key.split('|') as [string, string];
      // As the SQLite log: history is kept only with its transaction.
      if ((Number(epoch) !== this.ownerEpoch && !this.bugs.unfenced) || !this.durable.has(txId)) continue;
      this.durableHistory.set(txId, [...(this.durableHistory.get(txId) ?? []), ...entries]);
    }
    this.pendingHistory.clear();
    if (this.crashAfterFlush?.()) return; // durable, and nobody was told
    for (const entry of batch) {
      for (const w of entry.waiters) w.resolve();
      for (const cb of entry.callbacks) cb();
    }
    for (const entry of refused) {
      for (const w of entry.waiters) w.reject(new WriteRefusedError(entry.tx.id, 'fenced'));
      this.refusedHooks.get(entry.epoch)?.(entry.tx);
    }
  }

  /** The owning process died: everything it had not flushed is gone (a stale instance's queue is its own). */
  crash(): void {
    for (const [key, entry] of this.pending) if (entry.epoch === this.ownerEpoch) this.pending.delete(key);
    for (const key of this.pendingHistory.keys()) {
      if (key.startsWith(`${this.ownerEpoch}|`)) this.pendingHistory.delete(key);
    }
    this.flushScheduled = false;
    this.flushEpoch++;
    if (this.pending.size > 0 || this.pendingHistory.size > 0) this.scheduleFlush();
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
        if (!byName.has(p.name)) {
          byName.set(p.name, null);
          this.onHeuristic?.(tx.id);
        }
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

  async keptOutcome(id: string): Promise<'commit' | 'forgotten' | null> {
    if (this.keptCommitted.has(id)) return 'commit';
    return this.forgottenThroughId !== null && id <= this.forgottenThroughId ? 'forgotten' : null;
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

  async loadUnfinished(shards?: readonly number[]): Promise<Transaction[]> {
    // As the SQLite log: payloads only for active transactions.
    return [...this.durable.values()]
      .filter((tx) => tx.finishedAtMs === null && (shards === undefined || shards.includes(shardOfId(tx.id) ?? -1)))
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
      if (this.checkResolutionsBeforeCompaction) this.checkResolutionsRecorded(tx.id);
      this.durable.delete(tx.id);
      this.durableHistory.delete(tx.id);
      this.heuristics.delete(tx.id);
      this.forgotten.set(tx.id, tx);
      if (tx.idempotencyKey !== null && (tx.finishedAtMs ?? 0) >= keysFinishedBeforeMs) {
        this.keptKeys.set(tx.idempotencyKey, tx);
      }
      if (tx.outcome === 'commit') this.keptCommitted.set(tx.id, tx.finishedAtMs ?? 0);
      n++;
    }
    let expiredCommitted = 0;
    for (const [id, finishedAtMs] of [...this.keptCommitted]) {
      if (expiredCommitted >= maxRows) break;
      if (finishedAtMs >= keysFinishedBeforeMs) continue;
      this.keptCommitted.delete(id);
      if (this.forgottenThroughId === null || id > this.forgottenThroughId) this.forgottenThroughId = id;
      expiredCommitted++;
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
