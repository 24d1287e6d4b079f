// What readers see: one transaction (live here, stored, or driven by another
// instance), the participant inquiry, a transaction's history, pages of the
// list, and the operators' overview. A live transaction is shown as
// published (its last durable-as-promised state), never ahead of the disk;
// one whose begin still waits for its fsync does not exist for readers yet.

import type { DecisionLog, HeuristicResolution, ListPage } from '../log/decision-log.js';
import type { HistoryEntry } from '../protocol/history.js';
import { type Outcome, type Transaction, type TxState, UNFINISHED_STATES } from '../protocol/types.js';
import type { ListFilter, Placement, Stats } from './contract.js';
import type { DecisionRate } from './decision-rate.js';
import { ElsewhereError, logUnwritable, NotFoundError, noTransaction, readingLog } from './errors.js';
import type { LiveTransaction } from './live-transaction.js';

export interface TransactionReadsOptions {
  readonly live: ReadonlyMap<string, LiveTransaction>;
  readonly log: DecisionLog;
  readonly placement: Placement;
  /** Several instances share the store: an unfinished transaction not live here is another's. */
  readonly sharded: boolean;
  readonly stuckAfterAttempts: number;
  readonly decisionRate: DecisionRate;
  readonly stuckParticipants: () => number;
}

export class TransactionReads {
  constructor(private readonly o: TransactionReadsOptions) {}

  /** As readers see it; NotFoundError for one they cannot see. */
  async read(id: string): Promise<Transaction> {
    // A live transaction with nothing published yet is one whose begin record
    // is written but not yet fsynced: nobody was told of it, and it may not
    // survive a power loss, so it does not exist for readers yet (the log
    // would already return it).
    const live = this.o.live.get(id);
    const tx = live ? live.published : await readingLog(() => this.o.log.get(id));
    if (!tx) throw noTransaction(id);
    return tx;
  }

  /** As readers see it, or null for one they cannot see. */
  async find(id: string): Promise<Transaction | null> {
    try {
      return await this.read(id);
    } catch (error) {
      if (error instanceof NotFoundError) return null;
      throw error;
    }
  }

  /**
   * A transaction that is not live here, read to answer a call that may
   * change it: only if it is this instance's (then it is finished, or
   * unknown); another instance's call goes there.
   */
  async readHere(id: string): Promise<Transaction> {
    if (!this.o.live.has(id) && this.o.placement.whereIs(id).at !== 'here') this.elsewhere(id);
    const tx = await this.read(id);
    // Unfinished and not live: another instance drives it (this one slept
    // through a takeover and only believes the shard is still its own).
    if (tx.finishedAtMs === null && !this.o.live.has(id) && this.o.sharded) this.elsewhere(id);
    return tx;
  }

  /** Throws where the transaction's calls go: its owner, or (none known now) a retry. */
  elsewhere(id: string): never {
    const where = this.o.placement.whereIs(id);
    throw new ElsewhereError(id, where.at === 'peer' ? where.url : null);
  }

  async get(id: string): Promise<Transaction> {
    const tx = await this.read(id);
    // Unfinished and driven by another instance: its memory is ahead of the
    // store (votes, and the end, are written lazily), so the read goes there:
    // a caller that just heard "committed" from it reads committed here too.
    if (this.o.sharded && tx.finishedAtMs === null && !this.o.live.has(id)) {
      const where = this.o.placement.whereIs(id);
      if (where.at === 'peer') throw new ElsewhereError(id, where.url);
    }
    return tx;
  }

  /**
   * The participant inquiry. Only a durable decision is ever reported; an id
   * the log does not hold is answered from what compaction kept of it: a
   * committed one's id, as long as idempotency keys are kept; past that,
   * `forgotten` for an id not after the newest one whose outcome expired
   * (docs/protocol.md); and abort for the rest, which never committed (a
   * committed transaction's record is kept until every participant
   * acknowledged, then its id): presumed abort.
   */
  async outcome(id: string): Promise<Outcome | 'pending' | 'forgotten'> {
    const live = this.o.live.get(id);
    if (live) return live.published?.outcome ?? 'pending';
    const stored = await readingLog(() => this.o.log.get(id));
    if (stored?.outcome) return stored.outcome;
    // Compacted, committed: final, whoever asks and wherever.
    const kept = stored ? null : await readingLog(() => this.o.log.keptOutcome(id));
    if (kept === 'commit') return 'commit';
    // Undecided or unknown: only the owner may say. Another instance may
    // hold it in memory with prepares out and its begin not yet written.
    if (this.o.placement.whereIs(id).at !== 'here') this.elsewhere(id);
    // Here, stored and not live: still being loaded after a takeover.
    if (stored) return 'pending';
    // Unknown: never decided commit (presumed abort). With several
    // instances, only if this one owns the shard now, by the store's word:
    // then it was begun here (and would be live or stored) or under an
    // earlier owner, whose writes no longer count. Begins are forced before
    // any prepare leaves, so a prepared participant's transaction is in the
    // store anyway; this keeps a presumed abort from resting on the belief
    // of an instance that slept through a takeover, whatever changes later.
    const owned = await readingLog(() => this.o.placement.confirmOwnership(id));
    // Loaded meanwhile (a takeover's recovery): it says for itself.
    const loaded = this.o.live.get(id);
    if (loaded) return loaded.published?.outcome ?? 'pending';
    if (!owned) this.elsewhere(id);
    // Not after the newest id whose outcome was forgotten: it may be one of
    // them, committed. Never abort for it; forgotten says what is known.
    return kept === 'forgotten' ? 'forgotten' : 'abort';
  }

  /** The transaction's history, oldest first; NotFoundError for a transaction readers cannot see. */
  async history(id: string): Promise<HistoryEntry[]> {
    await this.read(id);
    // Another instance's: its newest entries (those of a live transaction,
    // and the last ones of one just finished) ride along with its next write
    // and are in its memory only, so the read goes there, for the whole history.
    if (this.o.sharded && !this.o.live.has(id)) {
      const where = this.o.placement.whereIs(id);
      if (where.at === 'peer') throw new ElsewhereError(id, where.url);
    }
    return readingLog(() => this.o.log.history(id));
  }

  /** The heuristic outcomes of the transaction an operator resolved. */
  resolutions(id: string): Promise<HeuristicResolution[]> {
    return readingLog(() => this.o.log.resolutions(id));
  }

  /** Transactions in memory by state, every unfinished state present. */
  inFlightByState(): Map<TxState, number> {
    const counts = new Map<TxState, number>(UNFINISHED_STATES.map((s) => [s, 0]));
    for (const live of this.o.live.values()) {
      counts.set(live.current.state, (counts.get(live.current.state) ?? 0) + 1);
    }
    return counts;
  }

  async stats(): Promise<Stats> {
    let oldest: Transaction | null = null;
    for (const live of this.o.live.values()) {
      const tx = live.published;
      if (tx && (oldest === null || tx.createdAtMs < oldest.createdAtMs)) oldest = tx;
    }
    return {
      inFlight: this.inFlightByState(),
      decidedPerSecond: this.o.decisionRate.perSecond(),
      stuckParticipants: this.o.stuckParticipants(),
      unresolvedHeuristics: await readingLog(() => this.o.log.unresolvedHeuristics()),
      oldestUnfinished: oldest,
      stuckAfterAttempts: this.o.stuckAfterAttempts,
    };
  }

  async list(query: ListFilter): Promise<ListPage> {
    if (query.stuck) return this.listStuck(query);
    try {
      await this.o.log.flush();
    } catch (error) {
      // The page is read from the log, so what is queued for it goes first
      // (a state filter would miss it otherwise). With a full disk it cannot
      // go: that is the 503 of a log that cannot be written, not a 500.
      throw logUnwritable(error);
    }
    const page = await readingLog(() => this.o.log.list(query));
    const transactions: Transaction[] = [];
    for (const stored of page.transactions) {
      // A live transaction may have moved on since its last write (votes are
      // not written one by one), or not be durable yet (its begin is still
      // waiting for its fsync): show what readers see elsewhere.
      const live = this.o.live.get(stored.id);
      const tx = live ? live.published : stored;
      if (tx && (query.state === null || tx.state === query.state)) transactions.push(tx);
    }
    return { transactions, next: page.next };
  }

  /**
   * Transactions with a participant stuck now: attempts are counted in memory
   * only (they start over at a restart), so this page is read from the live
   * transactions, every unfinished one being live.
   */
  private async listStuck(query: ListFilter): Promise<ListPage> {
    const stuckAfter = this.o.stuckAfterAttempts;
    const matches: Transaction[] = [];
    for (const live of this.o.live.values()) {
      const tx = live.published;
      if (!tx || (query.after != null && tx.id >= query.after)) continue;
      if (!tx.participants.some((p) => !p.acknowledged && p.attempts >= stuckAfter)) continue;
      if (query.state != null && tx.state !== query.state) continue;
      if (query.createdBeforeMs != null && tx.createdAtMs >= query.createdBeforeMs) continue;
      if (query.participant != null && !tx.participants.some((p) => p.name === query.participant)) continue;
      if (query.heuristicUnresolved && !(await this.hasUnresolvedHeuristic(tx))) continue;
      matches.push(tx);
    }
    matches.sort((a, b) => (a.id < b.id ? 1 : -1));
    const page = matches.slice(0, query.limit);
    return { transactions: page, next: matches.length > query.limit ? (page.at(-1)?.id ?? null) : null };
  }

  private async hasUnresolvedHeuristic(tx: Transaction): Promise<boolean> {
    const resolved = new Set((await this.o.log.resolutions(tx.id)).map((r) => r.participant));
    return tx.participants.some((p) => p.heuristic !== null && p.heuristic !== tx.outcome && !resolved.has(p.name));
  }
}
