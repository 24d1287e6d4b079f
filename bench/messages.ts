// npm run bench:messages [-- --clients 8 --seconds 5 --rounds 2]
//
// Transactional messages (issue 21), two ways in the same run, against the
// same private PostgreSQL cluster and the same private nats-server:
// - outbox: the hand-written baseline (bench/outbox.ts): the service writes
//   its order row and an outbox row in one transaction; a relay publishes
//   the outbox to JetStream with Nats-Msg-Id and deletes the rows;
// - commitd: a database participant (the order row, prepared under the gid
//   commitd names) and a message participant (`orders.placed`) in one
//   commitd transaction; commitd publishes in phase two. Needs a commitd
//   with message participants; otherwise prints
//   "commitd side: not available in this build" and measures the outbox only.
// Measured per way: orders per second, the client's time per order, and the
// time from the client's answer until the message is in the stream (seen by
// an ordered consumer on the stream, in this process: one clock). Rounds
// alternate the ways. Also counts messages seen twice and never seen.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { startNatsServer } from '../test/support/nats-server.js';
import { type PostgresCluster, startPostgres } from '../test/support/postgres-cluster.js';
import { percentile } from './load.js';
import { createOutboxSchema, placeOrderWithOutbox, startRelay } from './outbox.js';
import { saveResult, startCoordinator } from './processes.js';

interface Options {
  clients: number;
  seconds: number;
  rounds: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { clients: 8, seconds: 5, rounds: 2 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '') as keyof Options;
    const value = Number(argv[i + 1]);
    if (!(key in o) || !Number.isInteger(value) || value < 1 || value > 3600) {
      throw new Error(`bad argument ${argv[i]} ${argv[i + 1]}`);
    }
    o[key] = value;
  }
  return o;
}

/** How long a round waits for its last messages to reach the stream. */
const DRAIN_WAIT_MS = 30_000;
const STREAM = 'BENCH_ORDERS';
const SUBJECT = 'orders.placed';

type Way = 'outbox' | 'commitd';

interface RoundResult {
  readonly way: Way;
  readonly ordersPerS: number;
  readonly orders: number;
  readonly failed: number;
  readonly answerP50Ms: number;
  readonly answerP99Ms: number;
  readonly toStreamP50Ms: number;
  readonly toStreamP99Ms: number;
  readonly toStreamMaxMs: number;
  readonly missing: number;
  readonly duplicates: number;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-bench-messages-'));
  let cluster: PostgresCluster | null = null;
  const nats = await startNatsServer();
  let coordinator: Awaited<ReturnType<typeof startCoordinator>> | null = null;
  const sessions: pg.Client[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  try {
    cluster = await startPostgres({ max_prepared_transactions: String(o.clients * 2 + 10) });
    await cluster.createDatabase('shop');
    const pool = new pg.Pool({ connectionString: cluster.url('shop'), max: 2 });
    cleanups.push(() => pool.end());
    await createOutboxSchema(pool);

    const nc = await connect({ servers: nats.url });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: STREAM, subjects: [SUBJECT], storage: StorageType.File });

    // Every message in the stream, with the time it was seen: keyed by the order id in its body.
    const seenAtMs = new Map<string, number>();
    let duplicates = 0;
    const watcher = await (await jetstream(nc).consumers.get(STREAM)).consume();
    cleanups.push(() => watcher.close());
    void (async () => {
      for await (const m of watcher) {
        const id = (m.json() as { id: string }).id;
        if (seenAtMs.has(id)) duplicates += 1;
        else seenAtMs.set(id, performance.now());
      }
    })();

    const relay = await startRelay(cluster.url('shop'), nc);
    cleanups.push(() => relay.stop());
    coordinator = await startCoordinator(dataDir, {
      env: {
        COMMITD_DATABASES: `shop=${cluster.url('shop')}`,
        COMMITD_DATABASE_POOL_SIZE: String(Math.max(4, o.clients)),
        COMMITD_NATS_URL: nats.url,
      },
    });
    const http = new HttpPool(coordinator.url, { connections: o.clients, pipelining: 1 });
    cleanups.push(() => http.close());
    for (let i = 0; i < o.clients; i++) {
      const client = new pg.Client({ connectionString: cluster.url('shop') });
      await client.connect();
      sessions.push(client);
    }

    const post = async (urlPath: string, body?: unknown) => {
      const r = await http.request({
        path: urlPath,
        method: 'POST',
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.statusCode, body: (await r.body.json().catch(() => null)) as Record<string, unknown> | null };
    };
    const beginBody = (order: { id: string }) => ({
      participants: [
        { name: 'orders', database: 'shop' },
        { name: 'order-placed', message: { subject: SUBJECT, data: order } },
      ],
    });

    // Does this commitd take message participants? A begin with one says.
    const probe = await post('/v1/transactions', beginBody({ id: 'probe' }));
    const commitdSupported = probe.status === 201;
    if (commitdSupported) await post(`/v1/transactions/${probe.body?.id}/abort`);
    else {
      console.log(
        `commitd side: not available in this build (a begin with a message participant answered ${probe.status}: ${JSON.stringify(probe.body?.detail ?? probe.body?.title ?? '')})`,
      );
    }

    let orderSeq = 0;
    const ways: Record<Way, (client: number) => Promise<string>> = {
      async outbox(client) {
        const order = { id: `o-${orderSeq++}`, item: 'book', qty: 1 };
        await placeOrderWithOutbox(sessions[client] as pg.Client, order);
        return order.id;
      },
      async commitd(client) {
        const order = { id: `c-${orderSeq++}`, item: 'book', qty: 1 };
        const begun = await post('/v1/transactions', beginBody(order));
        if (begun.status !== 201) throw new Error(`begin answered ${begun.status}`);
        const gid = (begun.body?.participants as Array<{ xid?: string }> | undefined)?.[0]?.xid;
        if (gid === undefined) throw new Error('begin named no gid for the database participant');
        const session = sessions[client] as pg.Client;
        await session.query('BEGIN');
        await session.query('INSERT INTO orders (id, item, qty) VALUES ($1, $2, $3)', [
          order.id,
          order.item,
          order.qty,
        ]);
        await session.query(`PREPARE TRANSACTION ${pg.escapeLiteral(gid)}`);
        const committed = await post(`/v1/transactions/${begun.body?.id}/commit`);
        if (committed.status !== 200) throw new Error(`commit answered ${committed.status}`);
        return order.id;
      },
    };

    async function round(way: Way, seconds: number): Promise<RoundResult> {
      const answeredAtMs = new Map<string, number>();
      const answerMs: number[] = [];
      let failed = 0;
      let firstError: unknown = null;
      const duplicatesBefore = duplicates;
      const started = performance.now();
      const end = started + seconds * 1000;
      await Promise.all(
        Array.from({ length: o.clients }, async (_, client) => {
          while (performance.now() < end) {
            const t0 = performance.now();
            try {
              const id = await ways[way](client);
              const t1 = performance.now();
              answeredAtMs.set(id, t1);
              answerMs.push(t1 - t0);
            } catch (error) {
              firstError ??= error;
              failed++;
            }
          }
        }),
      );
      const elapsedS = (performance.now() - started) / 1000;
      if (firstError) console.error(`${way}: first failure:`, (firstError as Error).message);
      const deadline = performance.now() + DRAIN_WAIT_MS;
      const arrived = () => [...answeredAtMs.keys()].every((id) => seenAtMs.has(id));
      while (!arrived() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200)); // late duplicates show up too
      const toStream: number[] = [];
      let missing = 0;
      for (const [id, answered] of answeredAtMs) {
        const seen = seenAtMs.get(id);
        if (seen === undefined) missing += 1;
        else toStream.push(seen - answered); // negative: in the stream before the client heard its answer
      }
      const answers = Float64Array.from(answerMs).sort();
      const streamed = Float64Array.from(toStream).sort();
      return {
        way,
        ordersPerS: answers.length / elapsedS,
        orders: answers.length,
        failed,
        answerP50Ms: percentile(answers, 0.5),
        answerP99Ms: percentile(answers, 0.99),
        toStreamP50Ms: percentile(streamed, 0.5),
        toStreamP99Ms: percentile(streamed, 0.99),
        toStreamMaxMs: streamed.length ? (streamed[streamed.length - 1] as number) : Number.NaN,
        missing,
        duplicates: duplicates - duplicatesBefore,
      };
    }

    const active: Way[] = commitdSupported ? ['outbox', 'commitd'] : ['outbox'];
    for (const way of active) await round(way, 1); // warm-up: connections, plans, JIT
    const results: RoundResult[] = [];
    for (let r = 0; r < o.rounds; r++) {
      for (const way of active) {
        const x = await round(way, o.seconds);
        results.push(x);
        console.log(
          `round ${r + 1} ${way.padEnd(7)}: ${x.ordersPerS.toFixed(0)} orders/s (failed ${x.failed}), answer p50 ${x.answerP50Ms.toFixed(2)} ms p99 ${x.answerP99Ms.toFixed(2)} ms; ` +
            `answer to stream p50 ${x.toStreamP50Ms.toFixed(2)} ms p99 ${x.toStreamP99Ms.toFixed(2)} ms max ${x.toStreamMaxMs.toFixed(2)} ms; missing ${x.missing}, duplicates ${x.duplicates}`,
        );
      }
    }
    const summary = (way: Way) => {
      const rs = results.filter((x) => x.way === way);
      if (rs.length === 0) return null;
      const mean = (f: (x: RoundResult) => number) => rs.reduce((s, x) => s + f(x), 0) / rs.length;
      return {
        ordersPerS: mean((x) => x.ordersPerS),
        answerP50Ms: mean((x) => x.answerP50Ms),
        answerP99Ms: mean((x) => x.answerP99Ms),
        toStreamP50Ms: mean((x) => x.toStreamP50Ms),
        toStreamP99Ms: mean((x) => x.toStreamP99Ms),
        missing: rs.reduce((s, x) => s + x.missing, 0),
        duplicates: rs.reduce((s, x) => s + x.duplicates, 0),
      };
    };
    const line = (name: string, s: ReturnType<typeof summary>) =>
      s === null
        ? `${name}: not available in this build`
        : `${name}: ${s.ordersPerS.toFixed(0)} orders/s, answer p50 ${s.answerP50Ms.toFixed(2)} ms p99 ${s.answerP99Ms.toFixed(2)} ms, ` +
          `answer to stream p50 ${s.toStreamP50Ms.toFixed(2)} ms p99 ${s.toStreamP99Ms.toFixed(2)} ms, missing ${s.missing}, duplicates ${s.duplicates}`;
    const outbox = summary('outbox');
    const commitd = summary('commitd');
    console.log(
      `\n${o.clients} clients, ${o.rounds} rounds of ${o.seconds} s each way, ${os.cpus().length} cores\n` +
        `${line('hand-written outbox + relay', outbox)}\n${line('commitd (database + message participant)', commitd)}` +
        (outbox && commitd
          ? `\nthroughput ratio commitd / outbox: ${(commitd.ordersPerS / outbox.ordersPerS).toFixed(2)}`
          : ''),
    );
    saveResult('messages', 'bench:messages', {
      clients: o.clients,
      seconds: o.seconds,
      rounds: o.rounds,
      outbox,
      commitd,
      rounds_detail: results,
    });
  } finally {
    for (const s of sessions) await s.end().catch(() => {});
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    coordinator?.child.kill('SIGTERM');
    cluster?.destroy();
    await nats.destroy();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
