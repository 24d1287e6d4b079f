// Transaction ids: `tx_` + a ULID (48-bit millisecond time, 80 random bits,
// Crockford base32). Sorting ids sorts transactions by creation, which the
// list API's "newest first" paging relies on; within one millisecond the
// random part is incremented so ids stay strictly increasing.
//
// With several instances (src/cluster) the first random digit names the
// transaction's shard, so any instance finds a transaction's owner from its
// id alone: ids then increase strictly per shard within a millisecond (and
// across milliseconds always), which is all the list API's paging needs.

import { randomFillSync } from 'node:crypto';

import { ALPHABET, ID_SHARDS } from '../protocol/transaction-ids.js';

export { ID_SHARDS, shardOfId, TX_ID_PATTERN } from '../protocol/transaction-ids.js';

export class IdGenerator {
  private lastMs = -1;
  private lastRandom: number[] = [];

  /** `entropy` returns `bytes` random bytes, read at once (they may be overwritten later). */
  constructor(private readonly entropy: (bytes: number) => Buffer = pooledRandom()) {}

  /** `shard` (0 to ID_SHARDS - 1): the shard the id names, or null for none (one instance). */
  next(nowMs: number, shard: number | null = null): string {
    if (nowMs <= this.lastMs) {
      increment(this.lastRandom);
    } else {
      this.lastMs = nowMs;
      const bytes = this.entropy(16);
      this.lastRandom = Array.from({ length: 16 }, (_, i) => (bytes[i] as number) & 31);
    }
    const random = this.lastRandom.map((d) => ALPHABET[d]);
    if (shard !== null) {
      if (!Number.isInteger(shard) || shard < 0 || shard >= ID_SHARDS) throw new RangeError(`no shard ${shard}`);
      random[0] = ALPHABET[shard];
    }
    return `tx_${encodeTime(this.lastMs)}${random.join('')}`;
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
