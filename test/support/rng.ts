// The one seeded random number generator of the tests, the simulator and the
// chaos run: mulberry32, small and fast, the same sequence for the same seed
// on every machine, so a seed replays exactly.

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /**
   * An independent sequence per purpose from one seed (the chaos run draws
   * its coordinator kills, participant kills and each client's choices from
   * their own streams), so one stream's draws never shift another's.
   */
  static stream(seed: number, stream: number): Rng {
    const rng = new Rng(1);
    rng.state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(stream + 1, 0xc2b2ae35)) >>> 0;
    return rng;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let x = this.state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A whole number from min to max, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** int over a [min, max] pair, as ranges are configured. */
  between([min, max]: readonly [number, number]): number {
    return this.int(min, max);
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.next() * 256);
    return b;
  }
}
