/**
 * At most `max` calls run at once; the rest wait in order. Recovery can hand
 * the participant client tens of thousands of messages in one go: queued here
 * each is a closure, where inside the HTTP client each would be a request
 * with its headers, body and buffers.
 */
export class CallLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly max: number) {}

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await call();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next caller, so `running` stays exact.
      if (next) next();
      else this.running--;
    }
  }

  get queued(): number {
    return this.waiting.length;
  }
}
