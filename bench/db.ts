// npm run bench:db [-- --clients 16 --seconds 8 --rounds 2]
//
// Atomic transfers between two PostgreSQL databases (issue 11), two ways in
// the same run on the same clusters:
// - direct: the application prepares both sides itself (BEGIN, UPDATE,
//   PREPARE TRANSACTION in each) and runs COMMIT PREPARED in each, with no
//   coordinator (and no durable record of its decision: a crash between the
//   two COMMIT PREPAREDs is its own problem);
// - commitd: the application begins a transaction at commitd, prepares both
//   sides under the gids commitd names, and asks commitd to commit: commitd
//   checks both are prepared, makes its decision durable and runs the COMMIT
//   PREPAREDs.
// Rounds alternate the two ways (the machine is noisy). Each database lives in
// its own private cluster (two servers, two WALs, as two services would have).
// Prints tx/s, p50/p99 of both and the ratio commitd / direct.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { type PostgresCluster, startPostgres } from '../test/support/postgres-cluster.js';
import { cpuSeconds, saveResult, scrape, startCoordinator } from './processes.js';

interface Options {
  clients: number;
  seconds: number;
  rounds: number;
  accounts: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { clients: 16, seconds: 8, rounds: 2, accounts: 1000 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '') as keyof Options;
    const value = Number(argv[i + 1]);
    if (!(key in o) || !Number.isInteger(value) || value < 1) throw new Error(`bad argument ${argv[i]} ${argv[i + 1]}`);
    o[key] = value;
  }
  return o;
}

interface Result {
  readonly way: 'direct' | 'commitd';
  readonly tps: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

async function load(clients: number, seconds: number, once: (client: number, seq: number) => Promise<void>) {
  const latencies: number[] = [];
  let failed = 0;
  let seq = 0;
  let firstError: unknown = null;
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await once(client, seq++);
          latencies.push(performance.now() - t0);
        } catch (error) {
          firstError ??= error;
          failed++;
        }
      }
    }),
  );
  if (firstError) console.error('first failure:', (firstError as Error).message);
  const elapsedS = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    tps: sorted.length / elapsedS,
    ok: sorted.length,
    failed,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

/** One side of a transfer in its own session, left prepared under `gid`. */
async function prepareSide(client: pg.Client, gid: string, account: number, delta: number): Promise<void> {
  await client.query('BEGIN');
  await client.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [delta, account]);
  await client.query(`PREPARE TRANSACTION ${pg.escapeLiteral(gid)}`);
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const clusters: PostgresCluster[] = [];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-bench-db-'));
  let coordinator: Awaited<ReturnType<typeof startCoordinator>> | null = null;
  const sessions: pg.Client[] = [];
  try {
    // Two clusters, as two services' databases would be; prepared
    // transactions in flight: at most one per client per side.
    for (let i = 0; i < 2; i++) {
      const c = await startPostgres({ max_prepared_transactions: String(o.clients * 2 + 10) });
      clusters.push(c);
      await c.createDatabase('bank');
      await c.query('CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)', [], 'bank');
      await c.query('INSERT INTO accounts SELECT g, 1000000 FROM generate_series(1, $1) g', [o.accounts], 'bank');
    }
    const [a, b] = clusters as [PostgresCluster, PostgresCluster];
    coordinator = await startCoordinator(dataDir, {
      env: {
        COMMITD_DATABASES: `a=${a.url('bank')},b=${b.url('bank')}`,
        COMMITD_DATABASE_POOL_SIZE: String(Math.max(4, o.clients)),
      },
    });
    const http = new HttpPool(coordinator.url, { connections: o.clients, pipelining: 1 });
    for (let i = 0; i < o.clients * 2; i++) {
      const client = new pg.Client({ connectionString: (i % 2 === 0 ? a : b).url('bank') });
      await client.connect();
      sessions.push(client);
    }
    const side = (client: number, which: 0 | 1) => sessions[client * 2 + which] as pg.Client;
    // Accounts never shared between clients at once: no lock waits, which
    // would measure the application, not the commit.
    const account = (client: number, seq: number) => 1 + ((client + o.clients * (seq % 7)) % o.accounts);

    const direct = async (client: number, seq: number) => {
      const gid = `bench:${process.pid}:${seq}`;
      const id = account(client, seq);
      await prepareSide(side(client, 0), gid, id, -1);
      await prepareSide(side(client, 1), gid, id, 1);
      await side(client, 0).query(`COMMIT PREPARED ${pg.escapeLiteral(gid)}`);
      await side(client, 1).query(`COMMIT PREPARED ${pg.escapeLiteral(gid)}`);
    };

    const viaCommitd = async (client: number, seq: number) => {
      const begun = await http.request({
        path: '/v1/transactions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"participants":[{"name":"debit","database":"a"},{"name":"credit","database":"b"}]}',
      });
      const tx = (await begun.body.json()) as { id: string; participants: Array<{ xid: string }> };
      if (begun.statusCode !== 201) throw new Error(`begin answered ${begun.statusCode}`);
      const id = account(client, seq);
      await prepareSide(side(client, 0), tx.participants[0]?.xid as string, id, -1);
      await prepareSide(side(client, 1), tx.participants[1]?.xid as string, id, 1);
      const committed = await http.request({ path: `/v1/transactions/${tx.id}/commit`, method: 'POST' });
      await committed.body.dump();
      if (committed.statusCode !== 200) throw new Error(`commit answered ${committed.statusCode}`);
    };

    // Warm both ways up (connections, plans, JIT) before measuring.
    await load(o.clients, 1, direct);
    await load(o.clients, 1, viaCommitd);
    const results: Result[] = [];
    let commitdCpuS = 0;
    let commitdTransactions = 0;
    for (let round = 0; round < o.rounds; round++) {
      for (const [way, once] of [
        ['direct', direct],
        ['commitd', viaCommitd],
      ] as const) {
        const cpuBefore = cpuSeconds(coordinator.child.pid as number);
        const r = { way, ...(await load(o.clients, o.seconds, once)) };
        if (way === 'commitd') {
          commitdCpuS += cpuSeconds(coordinator.child.pid as number) - cpuBefore;
          commitdTransactions += r.ok;
        }
        results.push(r);
        console.log(
          `round ${round + 1} ${way.padEnd(7)}: ${r.tps.toFixed(0)} tx/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms, failed ${r.failed}`,
        );
      }
    }
    const total = (way: Result['way']) => {
      const rs = results.filter((r) => r.way === way);
      const mean = (f: (r: Result) => number) => rs.reduce((s, r) => s + f(r), 0) / rs.length;
      return { tps: mean((r) => r.tps), p50Ms: mean((r) => r.p50Ms), p99Ms: mean((r) => r.p99Ms) };
    };
    const d = total('direct');
    const c = total('commitd');
    const leftover =
      (await a.query('SELECT count(*)::int AS n FROM pg_prepared_xacts', [], 'bank'))[0]?.n +
      (await b.query('SELECT count(*)::int AS n FROM pg_prepared_xacts', [], 'bank'))[0]?.n;
    // Where commitd's time goes, over every transaction it ran (warm-up included).
    const m = await scrape(coordinator.url);
    const metric = (name: string) => m.get(name) ?? Number.NaN;
    const meanMs = (name: string, labels: string) =>
      (1000 * metric(`${name}_sum${labels}`)) / metric(`${name}_count${labels}`);
    const finished = metric('commitd_transactions_finished_total{outcome="commit"}');
    const where = {
      voteMs: meanMs('commitd_participant_request_duration_seconds', '{message="prepare"}'),
      commitPreparedMs: meanMs('commitd_participant_request_duration_seconds', '{message="commit"}'),
      logFsyncMs: meanMs('commitd_log_fsync_duration_seconds', ''),
      logFsyncsPerTx: metric('commitd_log_fsyncs_total') / finished,
      cpuUsPerTx: (commitdCpuS * 1e6) / commitdTransactions,
    };
    const sums = await Promise.all(
      [a, b].map(async (x) => (await x.query('SELECT sum(balance)::text AS s FROM accounts', [], 'bank'))[0]?.s),
    );
    const moved = BigInt(sums[1] as string) - BigInt(o.accounts) * 1_000_000n;
    const conserved = BigInt(sums[0] as string) + BigInt(sums[1] as string) === BigInt(o.accounts) * 2_000_000n;
    console.log(
      `\n${o.clients} clients, ${o.rounds} rounds of ${o.seconds} s each way, ${os.cpus().length} cores\n` +
        `direct (PREPARE TRANSACTION + COMMIT PREPARED by the application): ${d.tps.toFixed(0)} tx/s, p50 ${d.p50Ms.toFixed(2)} ms, p99 ${d.p99Ms.toFixed(2)} ms\n` +
        `through commitd:                                                  ${c.tps.toFixed(0)} tx/s, p50 ${c.p50Ms.toFixed(2)} ms, p99 ${c.p99Ms.toFixed(2)} ms\n` +
        `ratio commitd / direct: ${(c.tps / d.tps).toFixed(2)} (goal >= 0.8)\n` +
        `inside commitd (means): vote (look-up in pg_prepared_xacts) ${where.voteMs.toFixed(2)} ms, COMMIT PREPARED ${where.commitPreparedMs.toFixed(2)} ms, ` +
        `decision-log fsync ${where.logFsyncMs.toFixed(2)} ms, ${where.logFsyncsPerTx.toFixed(2)} log fsyncs per transaction, ` +
        `${where.cpuUsPerTx.toFixed(0)} µs of commitd CPU per transaction\n` +
        `check: ${moved} transfers applied on the credit side, money conserved: ${conserved}, prepared transactions left: ${leftover}`,
    );
    saveResult('db', 'bench:db', {
      clients: o.clients,
      seconds: o.seconds,
      rounds: o.rounds,
      direct: d,
      commitd: c,
      ratio: c.tps / d.tps,
      insideCommitd: where,
      rounds_detail: results,
    });
    await http.close();
  } finally {
    for (const s of sessions) await s.end().catch(() => {});
    coordinator?.child.kill('SIGTERM');
    for (const c of clusters) c.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
