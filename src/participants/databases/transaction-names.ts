// The name a database participant's prepared transaction carries, and how it
// is written into SQL. Deterministic, so commitd finds it again after any
// crash (a service reads it off the transaction view, never computes it);
// pure, so it is tested on its own.
//
// Every name carries the deployment's identity (its decision store's, see
// DecisionLog.deploymentId): several deployments may share a database server,
// and each one's orphan scan must tell its own names from the others'.
// - PostgreSQL: the gid `commitd-<deployment>:<transaction id>:<participant name>`.
// - XA (MariaDB/MySQL): gtrid `<deployment>:<transaction id>`, bqual
//   `<participant name>`, formatID XA_FORMAT_ID.
// Names an older build prepared carry no deployment (`commitd:<tx>:<participant>`;
// gtrid `<tx>` under LEGACY_XA_FORMAT_ID): they are still found and finished
// by their transaction id, but never rolled back as unknown, since any
// deployment may have prepared them. Their prefix and format id differ from
// the new ones, so an older build's scan does not see the new names either.
//
// Neither can be a bind parameter (PREPARE TRANSACTION, COMMIT PREPARED and
// the XA statements take literals only), so each is written as a literal here:
// PostgreSQL's as pg's escapeLiteral writes it (a test holds the two equal),
// XA's as hexadecimal literals, which mean the same bytes whatever the
// connection's sql_mode or character set. pg itself is not imported here: this
// file is on the API's path, and loading the client costs every commitd
// without databases start-up time.

/** What every gid of this build starts with, before the deployment. */
export const GID_PREFIX = 'commitd-';
/** An older build's gids: `commitd:<transaction id>:<participant>`. */
export const LEGACY_GID_PREFIX = 'commitd:';

/** 'cmt2' in ASCII: commitd's XA transactions that carry a deployment. */
export const XA_FORMAT_ID = 0x636d7432;
/** 'cmtd' in ASCII: an older build's XA transactions, gtrid the transaction id alone. */
export const LEGACY_XA_FORMAT_ID = 0x636d7464;

/**
 * A deployment's identity: short enough that a gid and an XA gtrid keep room
 * for the longest transaction id and participant name, and made of
 * characters that need no quoting anywhere.
 */
export const DEPLOYMENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
export const DEPLOYMENT_ID_MAX_CHARS = 32;

/** PostgreSQL's gid is at most 199 bytes (GIDSIZE 200 with its terminating zero). */
export const POSTGRES_GID_MAX_BYTES = 199;

/** The XA standard's limit on gtrid and on bqual, each. */
export const XA_PART_MAX_BYTES = 64;

export interface TransactionName {
  /** The deployment whose name it is; null for a name an older build prepared (it carries none). */
  readonly deployment: string | null;
  readonly txId: string;
  readonly participant: string;
}

export function postgresGid(deployment: string, txId: string, participant: string): string {
  return `${GID_PREFIX}${deployment}:${txId}:${participant}`;
}

/** The gid an older build gave the same participant. */
export function legacyPostgresGid(txId: string, participant: string): string {
  return `${LEGACY_GID_PREFIX}${txId}:${participant}`;
}

/** What every gid of one deployment starts with. */
export function deploymentGidPrefix(deployment: string): string {
  return `${GID_PREFIX}${deployment}:`;
}

/**
 * The deployment, transaction and participant a gid names, or null when it is
 * not one of commitd's. Deployments and transaction ids never hold a colon;
 * participant names may, so the first colons after the prefix separate.
 */
export function parsePostgresGid(gid: string): TransactionName | null {
  let deployment: string | null = null;
  let rest: string;
  if (gid.startsWith(GID_PREFIX)) {
    rest = gid.slice(GID_PREFIX.length);
    const colon = rest.indexOf(':');
    if (colon <= 0) return null;
    deployment = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
  } else if (gid.startsWith(LEGACY_GID_PREFIX)) {
    rest = gid.slice(LEGACY_GID_PREFIX.length);
  } else {
    return null;
  }
  const colon = rest.indexOf(':');
  if (colon <= 0 || colon === rest.length - 1) return null;
  return { deployment, txId: rest.slice(0, colon), participant: rest.slice(colon + 1) };
}

/**
 * A PostgreSQL string literal (a gid, for COMMIT PREPARED / ROLLBACK PREPARED) meaning `text` whatever standard_conforming_strings
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
  const gidBytes = Buffer.byteLength(GID_PREFIX) + DEPLOYMENT_ID_MAX_CHARS + 1 + txIdBytesMax + 1 + bytes;
  if (kind === 'postgres' && gidBytes > POSTGRES_GID_MAX_BYTES) {
    return `a participant's gid on PostgreSQL is at most ${POSTGRES_GID_MAX_BYTES} bytes`;
  }
  return null;
}

/** The gtrid of a participant's xid: the deployment, then the transaction id. */
function xaGtrid(deployment: string, txId: string): string {
  return `${deployment}:${txId}`;
}

/** The xid as XA statements take it: X'<gtrid hex>',X'<bqual hex>',<formatID>. */
export function xaXidLiteral(deployment: string, txId: string, participant: string): string {
  return hexXid(xaGtrid(deployment, txId), participant, XA_FORMAT_ID);
}

/** The xid an older build gave the same participant, as XA statements take it. */
export function legacyXaXidLiteral(txId: string, participant: string): string {
  return hexXid(txId, participant, LEGACY_XA_FORMAT_ID);
}

function hexXid(gtrid: string, bqual: string, formatId: number): string {
  return `X'${Buffer.from(gtrid).toString('hex')}',X'${Buffer.from(bqual).toString('hex')}',${formatId}`;
}

/** The xid as the transaction view shows it to a service: text it can put after XA START as it is. */
export function xaXidText(deployment: string, txId: string, participant: string): string {
  return `${escapeMysqlString(xaGtrid(deployment, txId))},${escapeMysqlString(participant)},${XA_FORMAT_ID}`;
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
  const formatId = Number(row.formatID);
  if (formatId !== XA_FORMAT_ID && formatId !== LEGACY_XA_FORMAT_ID) return null;
  const gtridBytes = Number(row.gtrid_length);
  const bqualBytes = Number(row.bqual_length);
  if (gtridBytes < 1 || bqualBytes < 1 || gtridBytes + bqualBytes !== row.data.length) return null;
  const gtrid = row.data.subarray(0, gtridBytes).toString('utf8');
  const participant = row.data.subarray(gtridBytes).toString('utf8');
  if (formatId === LEGACY_XA_FORMAT_ID) return { deployment: null, txId: gtrid, participant };
  const colon = gtrid.indexOf(':');
  if (colon <= 0 || colon === gtrid.length - 1) return null;
  return { deployment: gtrid.slice(0, colon), txId: gtrid.slice(colon + 1), participant };
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
