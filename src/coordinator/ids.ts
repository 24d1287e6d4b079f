// Transaction ids: `tx_` + a ULID (48-bit millisecond time, 80 random bits,
// Crockford base32). Sorting ids sorts transactions by creation, which the
// list API's "newest first" paging relies on; within one millisecond the
// random part is incremented so ids stay strictly increasing.

import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const TX_ID_PATTERN = '^tx_[0-9A-HJKMNP-TV-Z]{26}$';

export class IdGenerator {
  private lastMs = -1;
  private lastRandom: number[] = [];

  /** `entropy` returns `bytes` random bytes, read at once (they may be overwritten later). */
  constructor(private readonly entropy: (bytes: number) => Buffer = pooledRandom()) {}

  next(nowMs: number): string {
    if (nowMs <= this.lastMs) {
      increment(this.lastRandom);
    } else {
      this.lastMs = nowMs;
      const bytes = this.entropy(16);
      this.lastRandom = Array.from({ length: 16 }, (_, i) => (bytes[i] as number) & 31);
    }
    return `tx_${encodeTime(this.lastMs)}${this.lastRandom.map((d) => ALPHABET[d]).join('')}`;
  }
}

/** randomBytes costs an allocation and a system call per id: draw from a pool refilled 4 KiB at a time. */
function pooledRandom(): (bytes: number) => Buffer {
  const pool = Buffer.alloc(4096);
  let offset = pool.length;
  return (bytes) => {
    if (offset + bytes > pool.length) {
      randomFillSync(pool);
      offset = 0;
    }
    offset += bytes;
    return pool.subarray(offset - bytes, offset);
  };
}

function encodeTime(ms: number): string {
  let out = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}

function increment(digits: number[]): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    const d = (digits[i] as number) + 1;
    if (d < 32) {
      digits[i] = d;
      return;
    }
    digits[i] = 0;
  }
  // 2^80 ids within one millisecond cannot happen; wrapping would reorder ids.
  throw new Error('transaction id space for this millisecond exhausted');
}
