// The coordinator's periodic visit of what it holds: deadlines of undecided
// transactions (each live transaction judges its own), participants stuck in
// phase two and the oldest unfinished transaction (for the metrics and the
// operators' overview), unresolved heuristics, and compaction of the log
// (finished transactions past retention, idempotency keys past theirs).

import type { DecisionLog } from '../log/decision-log.js';
import type { TimerHandle, Timers } from '../timers.js';
import type { CoordinatorOptions } from './contract.js';
import type { LiveTransaction } from './live-transaction.js';
import type { CoordinatorObserver } from './observer.js';

type Settings = Pick<
  CoordinatorOptions,
  'sweepIntervalMs' | 'stuckAfterAttempts' | 'retentionMs' | 'idempotencyKeyRetentionMs' | 'compactionBatchMax'
>;

export interface SweeperOptions {
  readonly live: ReadonlyMap<string, LiveTransaction>;
  readonly log: DecisionLog;
  readonly observer: CoordinatorObserver;
  readonly timers: Timers;
  readonly settings: Settings;
  readonly fail: (error: unknown, context: string) => void;
}

export class Sweeper {
  /** Participants stuck in phase two, as of the last sweep. */
  private stuckNow = 0;
  private timer: TimerHandle | null = null;
  private compacting = false;
  private stopped = false;

  constructor(private readonly o: SweeperOptions) {}

  get stuckParticipants(): number {
    return this.stuckNow;
  }

  /** Sweeps every sweepIntervalMs from now on, until stop. */
  start(): void {
    this.timer = this.o.timers.after(this.o.settings.sweepIntervalMs, () => {
      if (this.stopped) return;
      void this.sweep();
      this.start();
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.o.timers.cancel(this.timer);
  }

  /**
   * Aborts undecided transactions past their deadline and forgets finished
   * ones past retention. Resolves once the compaction is done; one runs at a
   * time (a sweep that comes while one runs leaves compaction to the next).
   */
  async sweep(): Promise<void> {
    const { log, observer, settings, fail } = this.o;
    const nowMs = this.o.timers.now();
    let stuck = 0;
    let oldestCreatedAtMs = nowMs;
    for (const live of this.o.live.values()) {
      stuck += live.sweep(nowMs, settings.stuckAfterAttempts);
      if (live.published) oldestCreatedAtMs = Math.min(oldestCreatedAtMs, live.published.createdAtMs);
    }
    this.stuckNow = stuck;
    observer.stuckParticipants(stuck);
    observer.oldestUnfinishedAgeSeconds(Math.max(0, nowMs - oldestCreatedAtMs) / 1000);
    if (this.compacting) return;
    this.compacting = true;
    try {
      observer.unresolvedHeuristics(await log.unresolvedHeuristics());
    } catch (error) {
      fail(error, 'counting unresolved heuristics');
    }
    try {
      const forgotten = await log.compact(
        nowMs - settings.retentionMs,
        nowMs - settings.idempotencyKeyRetentionMs,
        settings.compactionBatchMax,
      );
      observer.compacted(forgotten);
    } catch (error) {
      fail(error, 'compacting the log');
    } finally {
      this.compacting = false;
    }
  }
}
