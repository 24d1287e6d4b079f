// Bearer tokens with roles: parsed from COMMITD_TOKENS / server.tokens (and
// COMMITD_AUTH_TOKEN, an admin token), matched in constant time. Only the
// SHA-256 digest of each token is kept: the config file may hold digests
// instead of secrets, and a token is named in logs and idempotency scopes by
// a prefix of its digest, never by itself.

import { createHash, timingSafeEqual } from 'node:crypto';
import { PARTICIPANT_NAME_PATTERN } from '../protocol/types.js';

export const ROLES = ['client', 'participant', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface TokenEntry {
  readonly role: Role;
  /** SHA-256 of the token, 32 bytes. */
  readonly digest: Buffer;
  /** The first 12 hex digits of the digest: names the token in logs and scopes its idempotency keys. */
  readonly id: string;
  /** A participant token bound to these names (`participant@payments@stock:<token>`); null: unbound. */
  readonly names: readonly string[] | null;
}

export interface Identity {
  readonly role: Role;
  readonly tokenId: string;
  /** The participant names a bound participant token speaks for; null for any other token. */
  readonly names: readonly string[] | null;
}

/** A malformed entry. Its message never contains the secret, only the entry's position and the rule broken. */
export class TokenFormatError extends Error {
  override name = 'TokenFormatError';
}

const DIGEST_PREFIX = 'sha256:';
/** The shortest token or secret commitd accepts, in every setting that holds one. */
export const MIN_SECRET_LENGTH = 16;
const NAME = new RegExp(PARTICIPANT_NAME_PATTERN);
/** Names one participant token may be bound to. */
const BOUND_NAMES_MAX = 64;

/**
 * Entries are `role:token` or `role:sha256:<64 hex digits>`; a participant
 * token may be bound to the names it speaks for, `participant@payments:…`,
 * several `@name` allowed (a `:` in a name is written `%3A`, since the first
 * colon ends the role part). Tokens shorter than 16 characters are refused
 * (COMMITD_AUTH_TOKEN too): a bearer token is a password that is never typed,
 * so there is no reason for it to be guessable.
 */
export function parseTokens(entries: readonly string[], adminToken: string | null): TokenEntry[] {
  const out: TokenEntry[] = [];
  entries.forEach((raw, index) => {
    const entry = raw.trim();
    const where = `entry ${index + 1}`;
    const colon = entry.indexOf(':');
    if (colon < 0) throw new TokenFormatError(`${where} must be role:token (no role given)`);
    const [role = '', ...bound] = entry.slice(0, colon).split('@');
    if (!(ROLES as readonly string[]).includes(role)) {
      // The role part is not secret (it is the text before the first colon).
      throw new TokenFormatError(`${where} has an unknown role '${role.slice(0, 32)}' (use ${ROLES.join(', ')})`);
    }
    const names = bound.length === 0 ? null : boundNames(bound, role, where);
    const secret = entry.slice(colon + 1);
    let digest: Buffer;
    if (secret.startsWith(DIGEST_PREFIX)) {
      const hex = secret.slice(DIGEST_PREFIX.length);
      if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new TokenFormatError(`${where}: a sha256: digest is 64 hex digits`);
      digest = Buffer.from(hex, 'hex');
    } else {
      if (secret.length < MIN_SECRET_LENGTH)
        throw new TokenFormatError(`${where}: a token must be at least ${MIN_SECRET_LENGTH} characters`);
      digest = sha256(secret);
    }
    out.push(entry_(role as Role, digest, names));
  });
  if (adminToken !== null) {
    if (adminToken.length < MIN_SECRET_LENGTH) {
      throw new TokenFormatError(`COMMITD_AUTH_TOKEN: a token must be at least ${MIN_SECRET_LENGTH} characters`);
    }
    out.push(entry_('admin', sha256(adminToken), null));
  }
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
  return found === null ? null : { role: found.role, tokenId: found.id, names: found.names };
}

/** Participant tokens that may speak for any participant name (warned about at start). */
export function unboundParticipantTokens(tokens: readonly TokenEntry[]): TokenEntry[] {
  return tokens.filter((t) => t.role === 'participant' && t.names === null);
}

function boundNames(bound: readonly string[], role: string, where: string): string[] {
  if (role !== 'participant') {
    throw new TokenFormatError(`${where}: only a participant token is bound to names (${role}@… is not)`);
  }
  if (bound.length > BOUND_NAMES_MAX) {
    throw new TokenFormatError(`${where}: a token is bound to at most ${BOUND_NAMES_MAX} names`);
  }
  return bound.map((raw, i) => {
    let name: string;
    try {
      name = decodeURIComponent(raw);
    } catch {
      name = '';
    }
    // Names are not secret: the text before the first colon.
    if (!NAME.test(name)) {
      throw new TokenFormatError(
        `${where}: bound name ${i + 1} '${raw.slice(0, 64)}' is not a participant name (${PARTICIPANT_NAME_PATTERN})`,
      );
    }
    return name;
  });
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function entry_(role: Role, digest: Buffer, names: readonly string[] | null): TokenEntry {
  return { role, digest, id: digest.toString('hex').slice(0, 12), names };
}
