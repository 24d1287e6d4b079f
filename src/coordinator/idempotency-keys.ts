// Idempotency keys are scoped to the caller that used them: another caller's
// key is never found (it could otherwise squat a key first, or read what the
// key's owner began). The scope is an identity of the caller's token, never
// the token itself; '' when commitd runs without tokens, where every caller
// is the same principal. Stored keys keep their old, unscoped form in that
// case, so a log written before scopes existed answers its retries as before.

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
