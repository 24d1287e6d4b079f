import { realTimers, type TimerHandle, type Timers } from '../timers.js';

/**
 * At most `max` calls run at once; the rest wait in order. Recovery can hand
 * the participant client tens of thousands of messages in one go: queued here
 * each is a closure, where inside the HTTP client each would be a request
 * with its headers, body and buffers.
 *
 * A call's time limit counts from when it was asked for, queue included: a
 * caller waiting on a vote must not wait for a slot beyond the vote's own
 * timeout, however many calls are ahead of it (a queued prepare that outlived
 * its timeout held a commit answer open past every bound).
 */
export class CallLimiter {
  private running = 0;
  private readonly waiting: Array<{ start: () => void }> = [];

  constructor(
    private readonly max: number,
    private readonly timers: Pick<Timers, 'after' | 'cancel' | 'monotonicMs'> = realTimers,
  ) {}

  /**
   * Runs `call` with the time it has left once a slot is free; if
   * `timeLimitMs` passes while it waits, answers `expired()` instead and the
   * call never runs.
   */
  async run<T>(call: (remainingMs: number) => Promise<T>, timeLimitMs: number, expired: () => T): Promise<T> {
    if (this.running >= this.max) {
      const waitedMs = await this.wait(timeLimitMs);
      if (waitedMs === null) return expired();
      timeLimitMs -= waitedMs;
    } else {
      this.running++;
    }
    try {
      return await call(timeLimitMs);
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next caller, so `running` stays exact.
      if (next) next.start();
      else this.running--;
    }
  }

  /** Resolves with the milliseconds waited once it holds a slot, or null when the limit passed first. */
  private wait(timeLimitMs: number): Promise<number | null> {
    const startedAt = this.timers.monotonicMs();
    return new Promise((resolve) => {
      let timer: TimerHandle | null = null;
      const entry = {
        start: () => {
          if (timer !== null) this.timers.cancel(timer);
          resolve(Math.min(timeLimitMs, this.timers.monotonicMs() - startedAt));
        },
      };
      timer = this.timers.after(timeLimitMs, () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        resolve(null);
      });
      this.waiting.push(entry);
    });
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Nothing running and nothing waiting: the limiter can be dropped. */
  get idle(): boolean {
    return this.running === 0 && this.waiting.length === 0;
  }
}
