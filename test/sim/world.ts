// Simulated time for the deterministic simulator: one seeded random number
// generator (test/support/rng.ts) and one queue of events ordered by (time, sequence). Nothing in a
// simulation reads the real clock or draws real randomness, so a seed replays
// exactly.

import { Rng } from '../support/rng.js';

export { Rng };

interface Scheduled {
  readonly time: number;
  readonly seq: number;
  readonly fn: () => void;
}

export class World {
  now = 1_800_000_000_000; // a fixed epoch: ids and timestamps replay too
  steps = 0;
  private seq = 0;
  private heap: Scheduled[] = [];

  constructor(readonly rng: Rng) {}

  at(delayMs: number, fn: () => void): void {
    this.push({ time: this.now + Math.max(0, delayMs), seq: this.seq++, fn });
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Runs the next event, then lets every promise it settled run to completion. */
  async step(): Promise<boolean> {
    const next = this.pop();
    if (!next) return false;
    this.now = next.time;
    this.steps++;
    next.fn();
    // Promise continuations are microtasks; one macrotask turn drains them
    // all. No real I/O is pending in a simulation, so this is deterministic.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return true;
  }

  private push(e: Scheduled): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i] as Scheduled, h[parent] as Scheduled)) break;
      [h[i], h[parent]] = [h[parent] as Scheduled, h[i] as Scheduled];
      i = parent;
    }
  }

  private pop(): Scheduled | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l] as Scheduled, h[m] as Scheduled)) m = l;
        if (r < h.length && before(h[r] as Scheduled, h[m] as Scheduled)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as Scheduled, h[i] as Scheduled];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
