// Idempotency keys are scoped to the caller that used them: another caller's
// key is never found (it could otherwise squat a key first, or read what the
// key's owner began). The scope is an identity of the caller's token, never
// the token itself; '' when commitd runs without tokens, where every caller
// is the same principal. Stored keys keep their old, unscoped form in that
// case, so a log written before scopes existed answers its retries as before.
//
// Scope and key are joined by a control character the key's schema refuses,
// so the join cannot be forged. Older builds joined them with NUL, which
// PostgreSQL's text refuses (every begin with a key and a token failed
// there); they could only store such keys in the SQLite log, where they are
// still looked for.

import type { DecisionLog } from '../log/decision-log.js';
import type { Transaction } from '../protocol/types.js';
import { readingLog } from './errors.js';
import type { LiveTransaction } from './live-transaction.js';

/** Joins scope and key (the unit separator): stored as is by SQLite and PostgreSQL alike. */
const SEPARATOR = '\u001f';
/** What older builds joined them with (only ever stored in the SQLite log). */
const LEGACY_SEPARATOR = '\u0000';

export function scopedKey(scope: string, key: string): string {
  return scope === '' ? key : `${scope}${SEPARATOR}${key}`;
}

/** Every form a key of this scope may be stored in, the current one first. */
function storedForms(scope: string, key: string): string[] {
  return scope === '' ? [key] : [scopedKey(scope, key), `${scope}${LEGACY_SEPARATOR}${key}`];
}

/** The key as its caller sent it. */
export function clientKey(stored: string): string {
  for (const separator of [SEPARATOR, LEGACY_SEPARATOR]) {
    const at = stored.indexOf(separator);
    if (at >= 0) return stored.slice(at + 1);
  }
  return stored;
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

  /** The transaction begun with this key in this scope, in whatever form it was stored. */
  async find(scope: string, key: string): Promise<Transaction | undefined> {
    for (const stored of storedForms(scope, key)) {
      const found = await this.findStored(stored);
      if (found) return found;
    }
    return undefined;
  }

  private async findStored(key: string): Promise<Transaction | undefined> {
    const id = this.liveIds.get(key);
    const live = id === undefined ? undefined : this.liveById(id);
    if (!live) return readingLog(() => this.log.findByIdempotencyKey(key));
    // Concurrent begins with one key make one transaction: the others wait for its begin.
    await live.begun;
    return live.published;
  }
}
