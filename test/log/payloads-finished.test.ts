// Payloads go when a transaction finishes, heuristic or not (issue 23): a
// heuristic answer kept them on disk until an operator resolved it (96 MB
// for 100 one-shots of 1 MB). On both stores, through the real coordinator
// and a real participant; the rows are counted in the store itself.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import t, { type Test } from 'tap';
import { LOG_FILE } from '../../src/log/sqlite-log.js';
import { type Harness, type Overrides, startHarness } from '../support/harness.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';

const SHARED_POSTGRES = process.env.COMMITD_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const PAYLOAD = { blob: 'x'.repeat(32 * 1024) };

interface Store {
  readonly overrides: (t: Test) => Promise<Overrides>;
  readonly payloadRows: (h: Harness) => Promise<number>;
}

const STORES: Record<string, Store> = {
  sqlite: {
    overrides: async () => ({}),
    payloadRows: async (h) => {
      const db = new Database(path.join(h.dataDir, LOG_FILE), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM payloads').get() as { n: number }).n;
      } finally {
        db.close();
      }
    },
  },
  postgres: {
    overrides: async (t) => {
      const schema = `payloads_go_${randomBytes(6).toString('hex')}`;
      t.teardown(async () => {
        const c = new pg.Client(SHARED_POSTGRES);
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await c.end();
      });
      return { log: { storeUrl: SHARED_POSTGRES, storeSchema: schema } };
    },
    payloadRows: async (h) => {
      const c = new pg.Client(SHARED_POSTGRES);
      await c.connect();
      try {
        const { rows } = await c.query(`SELECT count(*)::int AS n FROM ${h.config.log.storeSchema}.payloads`);
        return rows[0].n;
      } finally {
        await c.end();
      }
    },
  },
};

/** A participant that votes yes, then answers every commit with a heuristic abort. */
async function heuristicParticipant(t: Test): Promise<TestParticipant> {
  const p = await startParticipant((m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  t.teardown(() => p.close());
  return p;
}

for (const [kind, store] of Object.entries(STORES)) {
  t.test(`${kind}: a one-shot with a heuristic answer leaves no payload behind once finished`, async (t) => {
    const good = await startParticipant();
    t.teardown(() => good.close());
    const bad = await heuristicParticipant(t);
    // Retention long: only the finish may delete them, not compaction.
    const h = await startHarness({
      ...(await store.overrides(t)),
      transactions: { retentionMs: 3_600_000 },
    });
    let closed = false;
    t.teardown(() => (closed ? fs.rmSync(h.dataDir, { recursive: true, force: true }) : h.close(true)));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await h.app.inject({
        method: 'POST',
        url: '/v1/transactions',
        payload: {
          participants: [
            { name: 'good', url: good.url, payload: PAYLOAD },
            { name: 'bad', url: bad.url, payload: PAYLOAD },
          ],
          commit: true,
        },
      });
      t.equal(res.statusCode, 200, res.body);
      ids.push(res.json().id);
    }
    // A transaction still active keeps its payloads: prepares may follow.
    const active = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { participants: [{ name: 'good', url: good.url, payload: PAYLOAD }] },
    });
    t.equal(active.statusCode, 201);
    await waitUntil(async () => {
      for (const id of ids) {
        const tx = await h.coordinator.reads.get(id);
        if (tx?.finishedAtMs == null) return false;
      }
      return true;
    }, 10_000);
    for (const id of ids) {
      const tx = await h.coordinator.reads.get(id);
      t.match(
        tx?.participants.find((p) => p.name === 'bad'),
        { heuristic: 'abort' },
        `${id}: heuristic`,
      );
    }
    // Closed first: the SQLite log holds its file exclusively while open.
    await h.close();
    closed = true;
    t.equal(await store.payloadRows(h), 1, 'only the active transaction keeps its payload');
  });
}
