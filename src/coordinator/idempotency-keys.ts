// Idempotency keys are scoped to the caller that used them: another caller's
// key is never found (it could otherwise squat a key first, or read what the
// key's owner began). The scope is an identity of the caller's token, never
// the token itself; '' when commitd runs without tokens, where every caller
// is the same principal. Stored keys keep their old, unscoped form in that
// case, so a log written before scopes existed answers its retries as before.

import type { DecisionLog } from '../log/decision-log.js';
import type { Transaction } from '../protocol/types.js';
import { readingLog } from './errors.js';
import type { LiveTransaction } from './live-transaction.js';

/** Joins scope and key; the key's schema refuses control characters, so the separator cannot be forged. */
const SEPARATOR = '\u0000';

export function scopedKey(scope: string, key: string): string {
  return scope === '' ? key : `${scope}${SEPARATOR}${key}`;
}

/** The key as its caller sent it. */
export function clientKey(stored: string): string {
  const at = stored.indexOf(SEPARATOR);
  return at < 0 ? stored : stored.slice(at + 1);
}

/** The transaction a (scoped) key names: one in memory (once its begin is on disk), else what the log keeps. */
export class IdempotencyIndex {
  /** Keys of the transactions in memory, to their ids. */
  private readonly liveIds = new Map<string, string>();

  constructor(
    private readonly log: Pick<DecisionLog, 'findByIdempotencyKey'>,
    private readonly liveById: (id: string) => LiveTransaction | undefined,
  ) {}

  add(live: LiveTransaction): void {
    const key = live.current.idempotencyKey;
    if (key !== null) this.liveIds.set(key, live.id);
  }

  remove(live: LiveTransaction): void {
    const key = live.current.idempotencyKey;
    if (key !== null) this.liveIds.delete(key);
  }

  async find(key: string): Promise<Transaction | undefined> {
    const id = this.liveIds.get(key);
    const live = id === undefined ? undefined : this.liveById(id);
    if (!live) return readingLog(() => this.log.findByIdempotencyKey(key));
    // Concurrent begins with one key make one transaction: the others wait for its begin.
    await live.begun;
    return live.published;
  }
}
