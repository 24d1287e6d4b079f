// Decisions per second over the last few seconds, for operators (the console's
// overview, `commitd stats`): a ring of one-second buckets on the monotonic
// clock, so a step of the wall clock cannot make it jump. Prometheus has the
// exact counters (commitd_transactions_decided_total); this is the glance.

import type { Outcome } from '../protocol/types.js';

export const DECISION_RATE_WINDOW_SECONDS = 10;

export class DecisionRate {
  /** Per bucket: the second it counts (monotonic), commits, aborts. */
  private readonly seconds = new Array<number>(DECISION_RATE_WINDOW_SECONDS).fill(-1);
  private readonly commits = new Array<number>(DECISION_RATE_WINDOW_SECONDS).fill(0);
  private readonly aborts = new Array<number>(DECISION_RATE_WINDOW_SECONDS).fill(0);

  constructor(private readonly monotonicMs: () => number) {}

  decided(outcome: Outcome): void {
    const second = Math.floor(this.monotonicMs() / 1000);
    const i = second % DECISION_RATE_WINDOW_SECONDS;
    if (this.seconds[i] !== second) {
      this.seconds[i] = second;
      this.commits[i] = 0;
      this.aborts[i] = 0;
    }
    if (outcome === 'commit') this.commits[i] = (this.commits[i] ?? 0) + 1;
    else this.aborts[i] = (this.aborts[i] ?? 0) + 1;
  }

  /** Average decisions per second over the last full window (the current second included). */
  perSecond(): { commit: number; abort: number } {
    const now = Math.floor(this.monotonicMs() / 1000);
    let commit = 0;
    let abort = 0;
    for (let i = 0; i < DECISION_RATE_WINDOW_SECONDS; i++) {
      const second = this.seconds[i] ?? -1;
      if (second > now - DECISION_RATE_WINDOW_SECONDS && second <= now) {
        commit += this.commits[i] ?? 0;
        abort += this.aborts[i] ?? 0;
      }
    }
    return { commit: commit / DECISION_RATE_WINDOW_SECONDS, abort: abort / DECISION_RATE_WINDOW_SECONDS };
  }
}
