// A database of a test's own on the local MariaDB/MySQL server (127.0.0.1:3306,
// root without a password, as .ci/run sets it up), dropped at the end. XA
// works on it as it is.

import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';

export const MARIADB_URL_BASE = process.env.COMMITD_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';

export interface MariaDatabase {
  readonly name: string;
  readonly url: string;
  query<R = unknown>(sql: string, params?: unknown[]): Promise<R[]>;
  /** A session of its own, for a service's XA work. */
  connect(): Promise<mysql.Connection>;
  drop(): Promise<void>;
}

/** Null when the server answers; otherwise why not. */
export async function mariadbAvailable(): Promise<string | null> {
  try {
    const c = await mysql.createConnection({ uri: MARIADB_URL_BASE, connectTimeout: 2000 });
    await c.end();
    return null;
  } catch (error) {
    return `no MariaDB/MySQL at ${MARIADB_URL_BASE}: ${(error as Error).message}`;
  }
}

export async function createMariaDatabase(): Promise<MariaDatabase> {
  const name = `commitd_test_${randomBytes(6).toString('hex')}`;
  const admin = await mysql.createConnection({ uri: MARIADB_URL_BASE });
  await admin.query(`CREATE DATABASE \`${name}\``);
  await admin.end();
  const url = `${MARIADB_URL_BASE}/${name}`;
  return {
    name,
    url,
    async query<R>(sql: string, params: unknown[] = []) {
      const c = await mysql.createConnection({ uri: url });
      try {
        const [rows] = await c.query(sql, params);
        return rows as R[];
      } finally {
        await c.end();
      }
    },
    connect: () => mysql.createConnection({ uri: url }),
    async drop() {
      const c = await mysql.createConnection({ uri: MARIADB_URL_BASE });
      try {
        await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await c.end();
      }
    },
  };
}
