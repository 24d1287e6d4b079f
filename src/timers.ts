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

/**
 * Test only: how far this process's wall clock is moved from the system's
 * (COMMITD_TEST_CLOCK_OFFSET_MS, milliseconds, either way), so that a process
 * test can run an instance whose clock is skewed (test/cluster/outcomes.test.ts).
 * Read once, here and nowhere else; not a setting, never documented for
 * operators, 0 when absent or not a finite number.
 */
const TEST_CLOCK_OFFSET_MS = testClockOffsetMs(process.env.COMMITD_TEST_CLOCK_OFFSET_MS);

function testClockOffsetMs(raw: string | undefined): number {
  const offset = Number(raw ?? 0);
  return Number.isFinite(offset) ? Math.trunc(offset) : 0;
}

export const realTimers: Timers = {
  now: TEST_CLOCK_OFFSET_MS === 0 ? Date.now : () => Date.now() + TEST_CLOCK_OFFSET_MS,
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
