// Time as the coordinator sees it: a clock and one-shot timers. Real ones in
// production; the deterministic simulator passes its own, so a run depends on
// nothing but its seed.

export type TimerHandle = { readonly __timer: unique symbol } | object;

export interface Timers {
  /**
   * Wall-clock time in milliseconds since the epoch: what deadlines and
   * timestamps are stored in. It can step back or forward (NTP, an operator);
   * docs/design.md ("Clocks") says what each step does.
   */
  now(): number;
  /** Milliseconds on a clock that never steps: for measuring waits and durations. */
  monotonicMs(): number;
  /** Runs `fn` after `delayMs`. A pending timer never keeps the process alive on its own. */
  after(delayMs: number, fn: () => void): TimerHandle;
  cancel(handle: TimerHandle): void;
}

export const realTimers: Timers = {
  now: Date.now,
  monotonicMs: () => performance.now(),
  after(delayMs, fn) {
    const t = setTimeout(fn, delayMs);
    t.unref();
    return t;
  },
  cancel(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
