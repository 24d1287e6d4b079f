// Bearer tokens with roles: parsed from COMMITD_TOKENS / server.tokens (and
// COMMITD_AUTH_TOKEN, an admin token), matched in constant time. Only the
// SHA-256 digest of each token is kept: the config file may hold digests
// instead of secrets, and a token is named in logs and idempotency scopes by
// a prefix of its digest, never by itself.

import { createHash, timingSafeEqual } from 'node:crypto';

export const ROLES = ['client', 'participant', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface TokenEntry {
  readonly role: Role;
  /** SHA-256 of the token, 32 bytes. */
  readonly digest: Buffer;
  /** The first 12 hex digits of the digest: names the token in logs and scopes its idempotency keys. */
  readonly id: string;
}

export interface Identity {
  readonly role: Role;
  readonly tokenId: string;
}

/** A malformed entry. Its message never contains the secret, only the entry's position and the rule broken. */
export class TokenFormatError extends Error {
  override name = 'TokenFormatError';
}

const DIGEST_PREFIX = 'sha256:';
const MIN_TOKEN_LENGTH = 16;

/**
 * Entries are `role:token` or `role:sha256:<64 hex digits>`. Tokens shorter
 * than 16 characters are refused: a bearer token is a password that is never
 * typed, so there is no reason for it to be guessable.
 */
export function parseTokens(entries: readonly string[], adminToken: string | null): TokenEntry[] {
  const out: TokenEntry[] = [];
  entries.forEach((raw, index) => {
    const entry = raw.trim();
    const where = `entry ${index + 1}`;
    const colon = entry.indexOf(':');
    if (colon < 0) throw new TokenFormatError(`${where} must be role:token (no role given)`);
    const role = entry.slice(0, colon);
    if (!(ROLES as readonly string[]).includes(role)) {
      // The role part is not secret (it is the text before the first colon).
      throw new TokenFormatError(`${where} has an unknown role '${role.slice(0, 32)}' (use ${ROLES.join(', ')})`);
    }
    const secret = entry.slice(colon + 1);
    let digest: Buffer;
    if (secret.startsWith(DIGEST_PREFIX)) {
      const hex = secret.slice(DIGEST_PREFIX.length);
      if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new TokenFormatError(`${where}: a sha256: digest is 64 hex digits`);
      digest = Buffer.from(hex, 'hex');
    } else {
      if (secret.length < MIN_TOKEN_LENGTH)
        throw new TokenFormatError(`${where}: a token must be at least ${MIN_TOKEN_LENGTH} characters`);
      digest = sha256(secret);
    }
    out.push(entry_(role as Role, digest));
  });
  if (adminToken !== null) out.push(entry_('admin', sha256(adminToken)));
  const seen = new Set<string>();
  for (const e of out) {
    const key = e.digest.toString('hex');
    if (seen.has(key)) throw new TokenFormatError(`the token ${e.id} is listed twice`);
    seen.add(key);
  }
  return out;
}

/**
 * The identity of a presented token, or null. Every entry is compared, in
 * constant time, whether or not an earlier one matched: how long the check
 * takes says nothing about which token, or how much of it, was right.
 */
export function identify(tokens: readonly TokenEntry[], presented: string): Identity | null {
  const digest = sha256(presented);
  let found: TokenEntry | null = null;
  for (const t of tokens) {
    if (timingSafeEqual(t.digest, digest) && found === null) found = t;
  }
  return found === null ? null : { role: found.role, tokenId: found.id };
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function entry_(role: Role, digest: Buffer): TokenEntry {
  return { role, digest, id: digest.toString('hex').slice(0, 12) };
}
