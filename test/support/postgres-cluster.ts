// A private PostgreSQL 15 cluster for a test: initdb'd as the `postgres` user
// in a temp directory, listening on 127.0.0.1 only on a free port, with
// max_prepared_transactions set, so a test can restart or kill it. Stop it in
// a teardown (stopAll() stops every cluster this process started, for an exit
// on failure).

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export const POSTGRES_BIN = process.env.COMMITD_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const USER = 'postgres';

export interface PostgresCluster {
  readonly port: number;
  readonly dataDir: string;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database?: string): string;
  /** Runs SQL in `database` on a fresh connection, returning the rows. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<R[]>;
  createDatabase(name: string): Promise<void>;
  /** Stop (fast: ends sessions, keeps what is committed and prepared) and start again on the same port. */
  restart(): Promise<void>;
  stop(): void;
  start(): void;
  /** Stops the cluster and removes its files. */
  destroy(): void;
}

const running = new Set<PostgresCluster>();

export function postgresAvailable(): string | null {
  if (!fs.existsSync(path.join(POSTGRES_BIN, 'initdb'))) return `no PostgreSQL binaries in ${POSTGRES_BIN}`;
  if (spawnSync('id', ['-u', USER]).status !== 0) return `no '${USER}' user to run initdb as`;
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function asPostgres(command: string, args: string[]): void {
  const binary = path.join(POSTGRES_BIN, command);
  const result =
    process.getuid?.() === 0
      ? spawnSync('runuser', ['-u', USER, '--', binary, ...args], { encoding: 'utf8' })
      : spawnSync(binary, args, { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}${result.stdout}`);
  }
}

/** asPostgres without blocking this process meanwhile: its timers and sockets go on during a restart. */
function asPostgresAsync(command: string, args: string[]): Promise<void> {
  const binary = path.join(POSTGRES_BIN, command);
  const [file, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', USER, '--', binary, ...args]] : [binary, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed (${error.code}): ${stderr}${stdout}`));
      else resolve();
    });
  });
}

export async function startPostgres(settings: Record<string, string> = {}): Promise<PostgresCluster> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-pg-'));
  const dataDir = path.join(root, 'data');
  const socketDir = path.join(root, 'socket');
  fs.mkdirSync(socketDir);
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', `${USER}:${USER}`, root]);
  asPostgres('initdb', ['-D', dataDir, '-U', USER, '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C.UTF-8']);
  const port = await freePort();
  const conf = {
    listen_addresses: "'127.0.0.1'",
    port: String(port),
    unix_socket_directories: `'${socketDir}'`,
    max_prepared_transactions: '20',
    max_connections: '60',
    shared_buffers: '32MB',
    fsync: 'on',
    logging_collector: 'off',
    ...settings,
  };
  fs.appendFileSync(
    path.join(dataDir, 'postgresql.conf'),
    Object.entries(conf)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join(''),
  );
  const logFile = path.join(root, 'postgres.log');
  const pgCtlArgs = (action: string, extra: string[] = []) => [action, '-D', dataDir, '-w', '-t', '30', ...extra];
  const pgCtl = (action: string, extra: string[] = []) => asPostgres('pg_ctl', pgCtlArgs(action, extra));
  const url = (database = 'postgres') => `postgres://${USER}@127.0.0.1:${port}/${database}`;
  const cluster: PostgresCluster = {
    port,
    dataDir,
    url,
    async query(sql, params = [], database = 'postgres') {
      const client = new pg.Client({ connectionString: url(database) });
      await client.connect();
      try {
        return (await client.query(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    async createDatabase(name) {
      await cluster.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    },
    start: () => pgCtl('start', ['-l', logFile]),
    stop: () => pgCtl('stop', ['-m', 'fast']),
    async restart() {
      await asPostgresAsync('pg_ctl', pgCtlArgs('stop', ['-m', 'fast']));
      await asPostgresAsync('pg_ctl', pgCtlArgs('start', ['-l', logFile]));
    },
    destroy() {
      running.delete(cluster);
      try {
        cluster.stop();
      } catch {
        // already stopped
      }
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  cluster.start();
  running.add(cluster);
  return cluster;
}

/** Stops every cluster still running, whatever happened: for process exit. */
export function stopAll(): void {
  for (const cluster of [...running]) cluster.destroy();
}

process.once('exit', stopAll);

/** What privateCluster needs of a test file's root: tap's `t`. */
interface TestFile {
  fail(message: string): void;
  before(fn: () => Promise<void>): void;
  teardown(fn: () => void): void;
}

/**
 * One cluster for a whole test file: started before its first test,
 * destroyed after its last. Without PostgreSQL the file fails (.ci/run
 * installs it: in CI this is a failure, not a skip). Read the cluster through
 * the returned function, from inside the tests.
 */
export function privateCluster(t: TestFile): () => PostgresCluster {
  const missing = postgresAvailable();
  if (missing) {
    t.fail(`PostgreSQL is needed: ${missing}`);
    process.exit(1);
  }
  let cluster: PostgresCluster | null = null;
  t.before(async () => {
    cluster = await startPostgres();
  });
  t.teardown(() => cluster?.destroy());
  return () => {
    if (cluster === null) throw new Error('the cluster is not started yet: read it inside a test');
    return cluster;
  };
}
