// The name a database participant's prepared transaction carries, and how it
// is written into SQL. Deterministic, so a service computes it (or reads it off
// the transaction view) and commitd finds it again after any crash; pure, so it
// is tested on its own.
//
// - PostgreSQL: the gid `commitd:<transaction id>:<participant name>`.
// - XA (MariaDB/MySQL): gtrid `<transaction id>`, bqual `<participant name>`,
//   formatID XA_FORMAT_ID.
//
// Neither can be a bind parameter (PREPARE TRANSACTION, COMMIT PREPARED and
// the XA statements take literals only), so each is written as a literal here:
// PostgreSQL's as pg's escapeLiteral writes it (a test holds the two equal),
// XA's as hexadecimal literals, which mean the same bytes whatever the
// connection's sql_mode or character set. pg itself is not imported here: this
// file is on the API's path, and loading the client costs every commitd
// without databases start-up time.

export const GID_PREFIX = 'commitd:';

/** 'cmtd' in ASCII: tells commitd's XA transactions from anyone else's in XA RECOVER. */
export const XA_FORMAT_ID = 0x636d7464;

/** PostgreSQL's gid is at most 199 bytes (GIDSIZE 200 with its terminating zero). */
export const POSTGRES_GID_MAX_BYTES = 199;

/** The XA standard's limit on gtrid and on bqual, each. */
export const XA_PART_MAX_BYTES = 64;

export interface TransactionName {
  readonly txId: string;
  readonly participant: string;
}

export function postgresGid(txId: string, participant: string): string {
  return `${GID_PREFIX}${txId}:${participant}`;
}

/**
 * The transaction and participant a gid names, or null when it is not one of
 * commitd's. Transaction ids never hold a colon; participant names may, so the
 * first colon after the prefix is the separator.
 */
export function parsePostgresGid(gid: string): TransactionName | null {
  if (!gid.startsWith(GID_PREFIX)) return null;
  const rest = gid.slice(GID_PREFIX.length);
  const colon = rest.indexOf(':');
  if (colon <= 0 || colon === rest.length - 1) return null;
  return { txId: rest.slice(0, colon), participant: rest.slice(colon + 1) };
}

/** The gid as a PostgreSQL string literal, for PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED. */
export function postgresGidLiteral(txId: string, participant: string): string {
  return postgresLiteral(postgresGid(txId, participant));
}

/**
 * A PostgreSQL string literal meaning `text` whatever standard_conforming_strings
 * says: quotes doubled, and with a backslash, an E'' literal with backslashes
 * doubled (pg's escapeLiteral, byte for byte).
 */
export function postgresLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  if (!text.includes('\\')) return `'${quoted}'`;
  return ` E'${quoted.replaceAll('\\', '\\\\')}'`;
}

/** Why this name cannot be a participant on a database of this kind, or null when it can. */
export function nameProblem(kind: 'postgres' | 'mysql', txIdBytesMax: number, participant: string): string | null {
  const bytes = Buffer.byteLength(participant);
  if (kind === 'mysql' && bytes > XA_PART_MAX_BYTES) {
    return `a participant on a MySQL/MariaDB database has a name of at most ${XA_PART_MAX_BYTES} bytes (the XA bqual)`;
  }
  const gidBytes = Buffer.byteLength(GID_PREFIX) + txIdBytesMax + 1 + bytes;
  if (kind === 'postgres' && gidBytes > POSTGRES_GID_MAX_BYTES) {
    return `a participant's gid on PostgreSQL is at most ${POSTGRES_GID_MAX_BYTES} bytes`;
  }
  return null;
}

/** The xid as XA statements take it: X'<gtrid hex>',X'<bqual hex>',<formatID>. */
export function xaXidLiteral(txId: string, participant: string): string {
  return `X'${Buffer.from(txId).toString('hex')}',X'${Buffer.from(participant).toString('hex')}',${XA_FORMAT_ID}`;
}

/** The xid as the transaction view shows it to a service: text it can put after XA START as it is. */
export function xaXidText(txId: string, participant: string): string {
  return `${escapeMysqlString(txId)},${escapeMysqlString(participant)},${XA_FORMAT_ID}`;
}

/** A row of XA RECOVER. */
export interface XaRecoverRow {
  readonly formatID: number;
  readonly gtrid_length: number;
  readonly bqual_length: number;
  /** gtrid and bqual, concatenated. */
  readonly data: Buffer;
}

/** The transaction and participant an XA RECOVER row names, or null when it is not one of commitd's. */
export function parseXaRecoverRow(row: XaRecoverRow): TransactionName | null {
  if (Number(row.formatID) !== XA_FORMAT_ID) return null;
  const gtridBytes = Number(row.gtrid_length);
  const bqualBytes = Number(row.bqual_length);
  if (gtridBytes < 1 || bqualBytes < 1 || gtridBytes + bqualBytes !== row.data.length) return null;
  return {
    txId: row.data.subarray(0, gtridBytes).toString('utf8'),
    participant: row.data.subarray(gtridBytes).toString('utf8'),
  };
}

/**
 * A MySQL string literal that means the same under every sql_mode: quotes
 * doubled, and a backslash (an escape character unless NO_BACKSLASH_ESCAPES)
 * refused rather than guessed at. Participant names and transaction ids never
 * hold one.
 */
function escapeMysqlString(text: string): string {
  if (text.includes('\\') || text.includes('\0')) throw new Error('an XA name holds no backslash or NUL');
  return `'${text.replaceAll("'", "''")}'`;
}
