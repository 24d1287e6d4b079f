// What the PostgreSQL decision store promises beyond the DecisionLog contract,
// on a private PostgreSQL cluster: its schema's version, the decision rule in
// the store itself, and what happens to writes when the connection or the
// server goes away (a TCP relay between the store and PostgreSQL cuts the
// connection at the exact moment a test needs).

import net from 'node:net';
import t, { type Test } from 'tap';
import { IdempotencyKeyTakenError, LogUnusableError, WriteRefusedError } from '../../src/log/decision-log.js';
import { PostgresLog, type PostgresLogOptions } from '../../src/log/postgres-log.js';
import { POSTGRES_SCHEMA_VERSION } from '../../src/log/postgres-schema.js';
import { createTransaction, step } from '../../src/protocol/transitions.js';
import type { Event, Transaction } from '../../src/protocol/types.js';
import { waitUntil } from '../support/participant.js';
import { privateCluster } from '../support/postgres-cluster.js';

const cluster = privateCluster(t);

const T0 = 1_800_000_000_000;

function begin(id: string): Transaction {
  return createTransaction({
    id,
    nowMs: T0,
    timeoutMs: 60_000,
    oneShot: false,
    participants: [{ name: 'orders', url: 'http://orders.test/tx', database: null, payloadJson: '{"n":1}' }],
    idempotencyKey: null,
    requestHash: null,
    metadataJson: null,
    traceParent: null,
  }).tx;
}

function apply(tx: Transaction, events: readonly Event[]): Transaction {
  return events.reduce((current, event) => step(current, event, T0 + 10).tx, tx);
}

let schemas = 0;
async function open(t: Test, options: Partial<PostgresLogOptions> = {}) {
  const errors: Error[] = [];
  const log = await PostgresLog.open({
    url: cluster().url(),
    schema: `store_${++schemas}`,
    batchRecordsMax: 100,
    lazyFlushDelayMs: 5,
    onError: (e) => errors.push(e),
    ...options,
  });
  t.teardown(() => log.close());
  return { log, errors };
}

async function storedIds(schema: string): Promise<string[]> {
  const rows = await cluster().query<{ id: string }>(`SELECT id FROM ${schema}.transactions ORDER BY id`);
  return rows.map((r) => r.id);
}

t.test('a schema newer than this commitd is refused, naming both versions; the current one reopens', async (t) => {
  const schema = 'versioned';
  const first = await open(t, { schema });
  await first.log.writeForced(begin('tx_1'));
  await first.log.close();
  const reopened = await open(t, { schema });
  t.equal((await reopened.log.get('tx_1'))?.state, 'active', 'reopening migrates nothing and keeps what is there');
  await reopened.log.close();
  t.same(await cluster().query(`SELECT version FROM ${schema}.schema_version`), [{ version: POSTGRES_SCHEMA_VERSION }]);

  await cluster().query(`UPDATE ${schema}.schema_version SET version = version + 1`);
  await t.rejects(open(t, { schema }), LogUnusableError);
  await t.rejects(open(t, { schema }), {
    message: new RegExp(
      `schema version ${POSTGRES_SCHEMA_VERSION + 1}, newer than this commitd knows \\(${POSTGRES_SCHEMA_VERSION}\\)`,
    ),
  });
});

t.test('an unreachable store is refused at open, without its credentials in the message', async (t) => {
  const port = cluster().port + 1;
  const error = await PostgresLog.open({
    url: `postgres://commitd:s3cret@127.0.0.1:${port}/postgres`,
    schema: 'nowhere',
    batchRecordsMax: 10,
    lazyFlushDelayMs: 5,
    connectTimeoutMs: 2000,
  }).catch((e: Error) => e);
  t.type(error, LogUnusableError);
  t.match((error as Error).message, `127.0.0.1:${port}/postgres`);
  t.notMatch((error as Error).message, 's3cret');
});

t.test('a decision is an insert-if-absent: the other outcome is refused, in the batch and in plain SQL', async (t) => {
  const { log, errors } = await open(t, { schema: 'decisions' });
  const begun = begin('tx_1');
  await log.writeForced(begun);
  const committing = apply(begun, [{ type: 'commit' }, { type: 'vote', participant: 'orders', vote: 'yes' }]);
  t.equal(committing.outcome, 'commit');
  await log.writeForced(committing);
  const aborted = { ...committing, outcome: 'abort' as const, state: 'aborting' as const };
  // Beside it in the same batch, a record that is fine: it is written.
  const other = log.writeForced(begin('tx_2'));
  await t.rejects(
    log.writeForced(aborted),
    new WriteRefusedError('tx_1', 'decided'),
    'the forced writer hears that the stored decision stands',
  );
  await other;
  t.equal((await log.get('tx_1'))?.outcome, 'commit', 'the stored decision stands');
  t.ok(await log.get('tx_2'), 'the other record of the batch was written');
  await t.rejects(
    cluster().query("UPDATE decisions.transactions SET outcome = 'abort' WHERE id = 'tx_1'"),
    /a decision is never rewritten/,
  );
  t.same(errors, [], 'a refused record is not a failure of the store (the fence, when there is one, hears of it)');
});

t.test(
  'a new transaction whose idempotency key another one holds is left out, alone, with its writer told',
  async (t) => {
    const { log: first } = await open(t, { schema: 'keys' });
    const { log: second, errors } = await open(t, { schema: 'keys' });
    const keyed = (id: string, key: string) => ({ ...begin(id), idempotencyKey: key });
    // Scope and key as stored for a token (idempotency-keys.ts).
    await first.writeForced(keyed('tx_a', 'scope\u001forder-1'));
    // At the other instance, the same key in a batch with a record that is fine.
    const other = second.writeForced(begin('tx_c'));
    await t.rejects(second.writeForced(keyed('tx_b', 'scope\u001forder-1')), new IdempotencyKeyTakenError('tx_b'));
    await other;
    t.same(await storedIds('keys'), ['tx_a', 'tx_c'], 'nothing of tx_b, and the rest of its batch written');
    t.equal((await second.findByIdempotencyKey('scope\u001forder-1'))?.id, 'tx_a', 'the key names the one that won');
    // The first record of a transaction only: its later ones update it.
    await first.writeForced(apply(keyed('tx_a', 'scope\u001forder-1'), [{ type: 'abort' }]));
    t.equal((await first.get('tx_a'))?.state, 'aborted');
    // At the same moment from both: one wins, the other hears, every time.
    for (let round = 0; round < 20; round++) {
      const key = `scope\u001frace-${round}`;
      const results = await Promise.allSettled([
        first.writeForced(keyed(`tx_r${round}a`, key)),
        second.writeForced(keyed(`tx_r${round}b`, key)),
      ]);
      t.same(results.map((r) => r.status).sort(), ['fulfilled', 'rejected'], `round ${round}: one written, one told`);
      const lost = results.find((r) => r.status === 'rejected');
      t.type(lost?.status === 'rejected' ? lost.reason : null, IdempotencyKeyTakenError);
    }
    t.equal((await storedIds('keys')).length, 22);
    t.same(errors, [], 'a key taken is not a failure of the store');
  },
);

/**
 * A TCP relay in front of the cluster. `cut` arms it: the next chunk in the
 * given direction is swallowed and both sides of that connection are closed:
 * 'request' before the server sees it, 'reply' after the server acted on it.
 */
async function relay(t: Test, port: number) {
  let armed: 'request' | 'reply' | null = null;
  let cuts = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    const cut = () => {
      armed = null;
      cuts++;
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (chunk) => (armed === 'request' ? cut() : upstream.write(chunk)));
    upstream.on('data', (chunk) => (armed === 'reply' ? cut() : client.write(chunk)));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return {
    url: `postgres://postgres@127.0.0.1:${(server.address() as net.AddressInfo).port}/postgres`,
    arm: (direction: 'request' | 'reply') => {
      armed = direction;
    },
    cuts: () => cuts,
  };
}

t.test('the connection lost after the COMMIT went: the batch committed, and its writer hears so', async (t) => {
  const r = await relay(t, cluster().port);
  const { log } = await open(t, { url: r.url, schema: 'lost_reply', readConnectionsMax: 1 });
  await log.writeForced(begin('tx_before'));
  r.arm('reply');
  const written = log.writeForced(begin('tx_cut'));
  await t.resolves(written, 'resolved once a new session read the marker, not failed');
  t.equal(r.cuts(), 1, 'the reply was cut');
  t.same(await storedIds('lost_reply'), ['tx_before', 'tx_cut']);
  await t.resolves(log.writeForced(begin('tx_after')), 'and writes go on');
});

t.test('the connection lost before the statement arrived: its writer hears of the failure', async (t) => {
  const r = await relay(t, cluster().port);
  const { log } = await open(t, { url: r.url, schema: 'lost_request', readConnectionsMax: 1 });
  await log.writeForced(begin('tx_before'));
  r.arm('request');
  await t.rejects(log.writeForced(begin('tx_cut')), LogUnusableError, 'not committed, so it failed');
  t.equal(r.cuts(), 1);
  t.same(await storedIds('lost_request'), ['tx_before']);
  await t.resolves(log.writeForced(begin('tx_after')), 'and writes go on');
  t.same(await storedIds('lost_request'), ['tx_after', 'tx_before']);
});

t.test(
  'PostgreSQL stopped and started during writes: forced writes fail, then succeed; nothing acknowledged is lost',
  async (t) => {
    const schema = 'restarts';
    const { log } = await open(t, { schema, connectTimeoutMs: 2000 });
    const acknowledged: string[] = [];
    const failures: Error[] = [];
    let running = true;
    let n = 0;
    const writer = async () => {
      while (running) {
        const id = `tx_${String(++n).padStart(6, '0')}`;
        try {
          await log.writeForced(begin(id));
          acknowledged.push(id);
        } catch (error) {
          failures.push(error as Error);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const writers = Array.from({ length: 4 }, writer);
    await waitUntil(() => acknowledged.length >= 50, 20_000, 'writes before the stop');
    cluster().stop();
    await waitUntil(() => failures.length >= 4, 20_000, 'writes failing while PostgreSQL is down');
    const ackedWhileDown = acknowledged.length;
    cluster().start();
    await waitUntil(() => acknowledged.length >= ackedWhileDown + 50, 30_000, 'writes after the start');
    running = false;
    await Promise.all(writers);

    t.ok(
      failures.every((e) => e instanceof LogUnusableError),
      'every failure is the unwritable-log error (the API answers 503)',
    );
    const stored = new Set(await storedIds(schema));
    t.same(
      acknowledged.filter((id) => !stored.has(id)),
      [],
      `all ${acknowledged.length} acknowledged writes are in the store (${failures.length} failed)`,
    );
    // The lazy flushes in between must not have turned an error into a crash or a lost record.
    await log.flush();
  },
);

t.test('several stores opened at once on an empty schema all open (issue 24, item 5)', async (t) => {
  // Instances of one deployment start together on an empty store: each
  // creates the schema if it is not there, and all must come up. Four at
  // once, on a fresh schema each round: the creations race in the catalog.
  const rounds = 8;
  const instances = 4;
  for (let round = 0; round < rounds; round++) {
    const schema = `together_${round}`;
    const opened = await Promise.allSettled(
      Array.from({ length: instances }, () =>
        PostgresLog.open({ url: cluster().url(), schema, batchRecordsMax: 100, lazyFlushDelayMs: 5 }),
      ),
    );
    for (const r of opened) if (r.status === 'fulfilled') await r.value.close();
    const failures = opened.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    t.same(failures, [], `round ${round}: all ${instances} opened`);
    t.same(await cluster().query(`SELECT version FROM ${schema}.schema_version`), [
      { version: POSTGRES_SCHEMA_VERSION },
    ]);
  }
});
