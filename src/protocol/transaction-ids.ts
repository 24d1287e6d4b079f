// The shape of a transaction id (`tx_` + a ULID, coordinator/ids.ts makes
// them) and the shard it names: one base-32 digit, the first after the time,
// so that any instance, and the store's queries, find a transaction's shard
// from its id alone.

export const TX_ID_PATTERN = '^tx_[0-9A-HJKMNP-TV-Z]{26}$';
/** Crockford's base 32: the digits of an id. */
export const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** How many shards an id can name: one base-32 digit. */
export const ID_SHARDS = 32;
/** Where the shard digit is in an id: after `tx_` and the 10 digits of time. */
export const SHARD_DIGIT_INDEX = 13;

/** The shard an id names; null for a string that is not an id. */
export function shardOfId(id: string): number | null {
  if (id.length !== 29 || !id.startsWith('tx_')) return null;
  const digit = ALPHABET.indexOf(id[SHARD_DIGIT_INDEX] as string);
  return digit < 0 ? null : digit;
}
