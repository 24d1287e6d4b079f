// Configuration: config/default.yaml (or COMMITD_CONFIG), then one COMMITD_*
// environment variable per key, env winning. Validated once at start; a bad
// value stops commitd with a message naming the key, its variable and the
// allowed range.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { STORE_SCHEMA_PATTERN } from './log/postgres-schema.js';
import { DEPLOYMENT_ID_PATTERN } from './participants/databases/transaction-names.js';
import { parseParticipantSecrets, SecretFormatError } from './participants/signing.js';
import { parseAllowedPrefixes, UrlPolicyError } from './participants/url-policy.js';
import { normalOrigin } from './security/access.js';
import { MIN_SECRET_LENGTH, parseTokens, TokenFormatError } from './security/tokens.js';

type Spec =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'string'; readonly nullable: boolean; readonly secret?: boolean }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  /** A YAML list of strings, or one comma-separated string (how an environment variable gives it). */
  | { readonly kind: 'list'; readonly secret?: boolean }
  | { readonly kind: 'bool' };

const int = (min: number, max: number) => ({ kind: 'int', min, max }) as const;
const str = { kind: 'string', nullable: false } as const;
const optionalStr = { kind: 'string', nullable: true } as const;
const optionalSecret = { kind: 'string', nullable: true, secret: true } as const;
const list = { kind: 'list' } as const;
const secretList = { kind: 'list', secret: true } as const;
const bool = { kind: 'bool' } as const;

const DAY_MS = 86_400_000;

// Every key, its section in the YAML file, and its allowed values. The
// defaults live in config/default.yaml, documented there.
export const SETTINGS = {
  server: {
    host: str,
    port: int(0, 65_535),
    dataDir: str,
    logLevel: { kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] } as const,
    bodyLimitBytes: int(1024, 64 * 1024 * 1024),
    authToken: optionalSecret,
    tokens: secretList,
    insecure: bool,
    allowedOrigins: list,
    protectOperations: bool,
    tlsCertFile: optionalStr,
    tlsKeyFile: optionalStr,
    rateLimitPerS: int(0, 1_000_000),
    headersTimeoutMs: int(100, 600_000),
    requestTimeoutMs: int(100, 3_600_000),
    idleTimeoutMs: int(100, 3_600_000),
    maxConnections: int(1, 1_000_000),
    shutdownGraceMs: int(0, 600_000),
  },
  transactions: {
    defaultTimeoutMs: int(1, DAY_MS),
    timeoutMsMin: int(1, DAY_MS),
    timeoutMsMax: int(1, DAY_MS),
    maxInFlight: int(1, 1_000_000),
    maxInFlightBytes: int(1024, 64 * 1024 * 1024 * 1024),
    maxInFlightPerCaller: int(0, 1_000_000),
    maxInFlightBytesPerCaller: int(0, 64 * 1024 * 1024 * 1024),
    maxParticipants: int(1, 10_000),
    maxPayloadBytes: int(0, 64 * 1024 * 1024),
    maxMetadataBytes: int(0, 1024 * 1024),
    retentionMs: int(0, 365 * DAY_MS),
    idempotencyKeyRetentionMs: int(0, 365 * DAY_MS),
    listLimitDefault: int(1, 10_000),
    listLimitMax: int(1, 10_000),
    listPageMaxBytes: int(1024, 256 * 1024 * 1024),
  },
  participants: {
    prepareTimeoutMs: int(1, 600_000),
    phaseTwoTimeoutMs: int(1, 600_000),
    retryDelayMsMin: int(1, 600_000),
    retryDelayMsMax: int(1, DAY_MS),
    stuckAfterAttempts: int(1, 1_000_000),
    connectionsPerOrigin: int(1, 10_000),
    maxCallsInFlight: int(1, 1_000_000),
    keepAliveTimeoutMs: int(1, 600_000),
    maxAnswerBytes: int(64, 64 * 1024 * 1024),
    signingSecret: optionalSecret,
    databasePoolSize: int(1, 1000),
    orphanScanIntervalMs: int(100, 3_600_000),
    orphanSafetyIntervalMs: int(0, DAY_MS),
    deploymentId: optionalStr,
    participantSecrets: secretList,
    participantOrigins: list,
    maxCallsPerOrigin: int(1, 1_000_000),
    participantCaFile: optionalStr,
    participantCertFile: optionalStr,
    participantKeyFile: optionalStr,
  },
  log: {
    maxBatchRecords: int(1, 100_000),
    lazyFlushDelayMs: int(0, 10_000),
    sweepIntervalMs: int(10, 600_000),
    compactionBatch: int(1, 1_000_000),
    /** postgres://… : decisions in PostgreSQL instead of the SQLite log in dataDir. */
    storeUrl: optionalSecret,
    storeSchema: str,
  },
  cluster: {
    advertiseUrl: optionalStr,
    /** A PEM file of the private CA that signed the other instances' certificates (they speak HTTPS to each other). */
    peerCaFile: optionalStr,
    leaseMs: int(500, 600_000),
    peerProbeIntervalMs: int(10, 60_000),
    peerSilenceMs: int(50, 600_000),
  },
} as const satisfies Record<string, Record<string, Spec>>;

type Value<S> = S extends { kind: 'int' }
  ? number
  : S extends { kind: 'list' }
    ? readonly string[]
    : S extends { kind: 'bool' }
      ? boolean
      : S extends { kind: 'string'; nullable: true }
        ? string | null
        : string;

export type Config = {
  readonly [Section in keyof typeof SETTINGS]: {
    readonly [Key in keyof (typeof SETTINGS)[Section]]: Value<(typeof SETTINGS)[Section][Key]>;
  };
} & {
  /** Databases that can be participants, by name: a map, not a key, so it lives outside SETTINGS. */
  readonly databases: readonly DatabaseConfig[];
};

export type DatabaseKind = 'postgres' | 'mysql';

export interface DatabaseConfig {
  readonly name: string;
  readonly kind: DatabaseKind;
  /** Carries credentials: never logged, never echoed in an error. */
  readonly url: string;
  readonly poolSize: number;
}

/** The section of the config file, and its environment variable, that name the databases. */
export const DATABASES_SECTION = 'databases';
export const DATABASES_ENV = 'COMMITD_DATABASES';
export const DATABASE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_DATABASES = 64;
const DATABASE_KINDS: Readonly<Record<string, DatabaseKind>> = {
  'postgres:': 'postgres',
  'postgresql:': 'postgres',
  'mysql:': 'mysql',
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The directory holding package.json: found by walking up, so it is right from src/ and from dist/src/. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
export const DEFAULT_CONFIG_FILE = path.join(PACKAGE_ROOT, 'config', 'default.yaml');

/** COMMITD_ + the key in upper snake case: prepareTimeoutMs -> COMMITD_PREPARE_TIMEOUT_MS. */
export function envName(key: string): string {
  return `COMMITD_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const file = env.COMMITD_CONFIG ? path.resolve(env.COMMITD_CONFIG) : null;
  return resolveConfig(readYaml(DEFAULT_CONFIG_FILE), file === null ? {} : readYaml(file), env, file);
}

function readYaml(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read the config file ${file}: ${(error as Error).message}`);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (error) {
    // The parser's message quotes the offending line, which may hold a secret:
    // only its first line (the rule and the position) is repeated.
    const first = (error as Error).message.split('\n')[0] ?? '';
    throw new ConfigError(`the config file ${file} is not valid YAML: ${first.replace(/:\s*$/, '')}`);
  }
}

/**
 * Every key's value: its environment variable, else the COMMITD_CONFIG file,
 * else config/default.yaml. A config file need only set what it changes, so
 * one written for an older commitd keeps working when keys are added; a key
 * it names that commitd does not know is refused (a typo would otherwise be
 * silently ignored).
 */
export function resolveConfig(
  defaultsRaw: unknown,
  customRaw: unknown,
  env: NodeJS.ProcessEnv,
  customFile: string | null,
): Config {
  const sources = [
    { file: DEFAULT_CONFIG_FILE, values: asRecord(defaultsRaw, DEFAULT_CONFIG_FILE) },
    ...(customFile === null ? [] : [{ file: customFile, values: asRecord(customRaw, customFile) }]),
  ];
  for (const { file, values } of sources) {
    for (const section of Object.keys(values)) {
      if (section === DATABASES_SECTION) continue;
      if (!(section in SETTINGS)) throw new ConfigError(`${file}: unknown section '${section}'`);
      const keys = SETTINGS[section as keyof typeof SETTINGS];
      for (const key of Object.keys(asRecord(values[section] ?? {}, `${file}: ${section}`))) {
        if (!(key in keys)) throw new ConfigError(`${file}: unknown key '${section}.${key}'`);
      }
    }
  }
  const out: Record<string, Record<string, unknown>> = {};
  for (const [section, keys] of Object.entries(SETTINGS)) {
    out[section] = {};
    for (const [key, spec] of Object.entries(keys) as Array<[string, Spec]>) {
      const variable = envName(key);
      const fromEnv = env[variable];
      // The last source that sets the key wins.
      const source = sources.filter((s) => key in ((s.values[section] as Record<string, unknown>) ?? {})).at(-1);
      if (fromEnv === undefined && source === undefined) {
        throw new ConfigError(`${DEFAULT_CONFIG_FILE}: '${section}.${key}' is missing (it must set every key)`);
      }
      const fromFile = (source?.values[section] as Record<string, unknown> | undefined)?.[key];
      const value = fromEnv ?? fromFile;
      const where = fromEnv !== undefined ? variable : `${section}.${key} in ${source?.file}`;
      (out[section] as Record<string, unknown>)[key] = check(value, spec, where, fromEnv !== undefined);
    }
  }
  const poolSize = (out.participants as { databasePoolSize: number }).databasePoolSize;
  const fromFile = sources.filter((s) => DATABASES_SECTION in s.values).at(-1);
  out[DATABASES_SECTION] = (env[DATABASES_ENV] !== undefined
    ? parseDatabasesEnv(env[DATABASES_ENV], poolSize)
    : parseDatabasesSection(
        fromFile?.values[DATABASES_SECTION] ?? {},
        poolSize,
        fromFile?.file ?? '',
      )) as unknown as Record<string, unknown>;
  const config = out as unknown as Config;
  const t = config.transactions;
  if (t.timeoutMsMin > t.timeoutMsMax) throw new ConfigError('transactions.timeoutMsMin must not exceed timeoutMsMax');
  if (t.defaultTimeoutMs < t.timeoutMsMin || t.defaultTimeoutMs > t.timeoutMsMax) {
    throw new ConfigError('transactions.defaultTimeoutMs must lie within [timeoutMsMin, timeoutMsMax]');
  }
  if (t.listLimitDefault > t.listLimitMax)
    throw new ConfigError('transactions.listLimitDefault must not exceed listLimitMax');
  checkStore(config.log.storeUrl, config.log.storeSchema);
  checkCluster(config.cluster);
  if (config.server.headersTimeoutMs > config.server.requestTimeoutMs) {
    throw new ConfigError('server.headersTimeoutMs must not exceed requestTimeoutMs');
  }
  const authToken = config.server.authToken;
  if (authToken !== null && authToken.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(
      `server.authToken (COMMITD_AUTH_TOKEN): a token must be at least ${MIN_SECRET_LENGTH} characters`,
    );
  }
  try {
    parseTokens(config.server.tokens, authToken);
  } catch (error) {
    if (error instanceof TokenFormatError) throw new ConfigError(`server.tokens (COMMITD_TOKENS): ${error.message}`);
    throw error;
  }
  for (const origin of config.server.allowedOrigins) {
    if (normalOrigin(origin) === null) {
      throw new ConfigError(`server.allowedOrigins (COMMITD_ALLOWED_ORIGINS): '${origin}' is not an origin`);
    }
  }
  const p = config.participants;
  if (p.signingSecret !== null && p.signingSecret.length < MIN_SECRET_LENGTH) {
    throw new ConfigError(
      `participants.signingSecret (COMMITD_SIGNING_SECRET): a secret must be at least ${MIN_SECRET_LENGTH} characters`,
    );
  }
  try {
    parseAllowedPrefixes(p.participantOrigins);
  } catch (error) {
    if (error instanceof UrlPolicyError) {
      throw new ConfigError(`participants.participantOrigins (COMMITD_PARTICIPANT_ORIGINS): ${error.message}`);
    }
    throw error;
  }
  try {
    parseParticipantSecrets(p.participantSecrets);
  } catch (error) {
    if (error instanceof SecretFormatError) {
      throw new ConfigError(`participants.participantSecrets (COMMITD_PARTICIPANT_SECRETS): ${error.message}`);
    }
    throw error;
  }
  if (p.deploymentId !== null && !DEPLOYMENT_ID_PATTERN.test(p.deploymentId)) {
    throw new ConfigError(
      `participants.deploymentId (COMMITD_DEPLOYMENT_ID) must be 1-32 letters, digits, '_' or '-', starting with a letter or digit, got ${show(p.deploymentId)}`,
    );
  }
  if (p.retryDelayMsMin > p.retryDelayMsMax) {
    throw new ConfigError('participants.retryDelayMsMin must not exceed retryDelayMsMax');
  }
  return config;
}

function checkCluster(c: Config['cluster']): void {
  if (c.advertiseUrl !== null) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(c.advertiseUrl);
    } catch {
      // reported below
    }
    if (parsed === null || !['http:', 'https:'].includes(parsed.protocol) || parsed.pathname !== '/') {
      throw new ConfigError(
        `cluster.advertiseUrl (COMMITD_ADVERTISE_URL) must be http(s)://host:port, got ${show(c.advertiseUrl)}`,
      );
    }
  }
  // The lease is renewed every probe interval: a few renewals must fit in it.
  if (c.peerProbeIntervalMs * 4 > c.leaseMs) {
    throw new ConfigError(
      'cluster.peerProbeIntervalMs (COMMITD_PEER_PROBE_INTERVAL_MS) must be at most a quarter of leaseMs',
    );
  }
  if (c.peerSilenceMs < c.peerProbeIntervalMs * 2) {
    throw new ConfigError('cluster.peerSilenceMs (COMMITD_PEER_SILENCE_MS) must be at least twice peerProbeIntervalMs');
  }
}

function checkStore(url: string | null, schema: string): void {
  if (!STORE_SCHEMA_PATTERN.test(schema)) {
    throw new ConfigError(
      `log.storeSchema (COMMITD_STORE_SCHEMA) must be 1-63 lower-case letters, digits or '_', not starting with a digit, got ${show(schema)}`,
    );
  }
  if (url === null) return;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The url is not repeated: it may hold a password.
    throw new ConfigError('log.storeUrl (COMMITD_STORE_URL) is not a valid URL');
  }
  if (DATABASE_KINDS[parsed.protocol] !== 'postgres') {
    throw new ConfigError('log.storeUrl (COMMITD_STORE_URL) must start with postgres:// or postgresql://');
  }
}

/** `name=url,name=url`; the kind is read from each url's scheme. Empty: no databases. */
export function parseDatabasesEnv(text: string, poolSize: number): DatabaseConfig[] {
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  return checkDatabases(
    entries.map((entry, i) => {
      const equals = entry.indexOf('=');
      if (equals <= 0) throw new ConfigError(`${DATABASES_ENV}: entry ${i + 1} must be name=url`);
      const name = entry.slice(0, equals).trim();
      return database(name, entry.slice(equals + 1).trim(), undefined, poolSize, `${DATABASES_ENV}: '${name}'`);
    }),
    DATABASES_ENV,
  );
}

/** The file's `databases:` mapping: name -> { url, kind?, poolSize? }. */
export function parseDatabasesSection(value: unknown, poolSize: number, file: string): DatabaseConfig[] {
  const where = `${file}: ${DATABASES_SECTION}`;
  const section = asRecord(value ?? {}, where);
  return checkDatabases(
    Object.entries(section).map(([name, raw]) => {
      const entry = asRecord(raw, `${where}.${name}`);
      for (const key of Object.keys(entry)) {
        if (!['url', 'kind', 'poolSize'].includes(key)) {
          throw new ConfigError(`${where}.${name}: unknown key '${key}' (url, kind, poolSize)`);
        }
      }
      const size = entry.poolSize ?? poolSize;
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > 1000) {
        throw new ConfigError(`${where}.${name}.poolSize must be an integer from 1 to 1000, got ${show(size)}`);
      }
      return database(name, entry.url, entry.kind, size, `${where}.${name}`);
    }),
    where,
  );
}

function database(name: string, url: unknown, kind: unknown, poolSize: number, where: string): DatabaseConfig {
  if (!DATABASE_NAME_PATTERN.test(name)) {
    throw new ConfigError(`${where}: a database name is 1-64 letters, digits, '.', '_' or '-', starting alphanumeric`);
  }
  if (typeof url !== 'string' || url === '') throw new ConfigError(`${where}: url must be a non-empty string`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The url is not repeated: it may hold a password.
    throw new ConfigError(`${where}: url is not a valid URL`);
  }
  const fromScheme = DATABASE_KINDS[parsed.protocol];
  if (fromScheme === undefined) throw new ConfigError(`${where}: url must start with postgres:// or mysql://`);
  if (kind !== undefined && kind !== fromScheme) {
    throw new ConfigError(`${where}: kind ${show(kind)} does not match the url's scheme (${fromScheme})`);
  }
  return { name, kind: fromScheme, url, poolSize };
}

function checkDatabases(databases: DatabaseConfig[], where: string): DatabaseConfig[] {
  if (databases.length > MAX_DATABASES) throw new ConfigError(`${where}: at most ${MAX_DATABASES} databases`);
  const names = new Set<string>();
  for (const d of databases) {
    if (names.has(d.name)) throw new ConfigError(`${where}: database '${d.name}' is named twice`);
    names.add(d.name);
  }
  return databases;
}

function check(value: unknown, spec: Spec, where: string, fromEnv: boolean): unknown {
  switch (spec.kind) {
    case 'int': {
      const n = fromEnv && typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < spec.min || n > spec.max) {
        throw new ConfigError(`${where} must be an integer from ${spec.min} to ${spec.max}, got ${show(value)}`);
      }
      return n;
    }
    case 'string':
      if (value === null || value === '') {
        if (spec.nullable) return null;
        throw new ConfigError(`${where} must be a non-empty string`);
      }
      if (typeof value !== 'string') {
        throw new ConfigError(`${where} must be a string${spec.secret ? '' : `, got ${show(value)}`}`);
      }
      return value;
    case 'list': {
      if (value === null || value === undefined || value === '') return [];
      const items = typeof value === 'string' ? value.split(',') : value;
      if (!Array.isArray(items) || !items.every((i) => typeof i === 'string')) {
        // A secret list is never echoed back: a mistyped secret would end up in a log.
        throw new ConfigError(
          `${where} must be a list of strings or one comma-separated string${spec.secret ? '' : `, got ${show(value)}`}`,
        );
      }
      return items.map((i) => i.trim()).filter((i) => i !== '');
    }
    case 'bool':
      if (value === true || value === 'true') return true;
      if (value === false || value === 'false') return false;
      throw new ConfigError(`${where} must be true or false, got ${show(value)}`);
    case 'enum':
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        throw new ConfigError(`${where} must be one of ${spec.values.join(', ')}, got ${show(value)}`);
      }
      return value;
  }
}

function asRecord(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${where} must be a mapping of keys to values`);
  }
  return value as Record<string, unknown>;
}

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

function findPackageRoot(start: string): string {
  let dir = start;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return start;
    dir = parent;
  }
  return dir;
}
