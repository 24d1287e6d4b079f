// The real service on the PostgreSQL decision store (COMMITD_STORE_URL), killed
// with SIGKILL: the restarted process recovers its unfinished transactions
// from the store, nothing acknowledged is lost, and no participant is left
// prepared. And a store with a newer schema stops it at start (exit 4).

import t, { type Test } from 'tap';
import { POSTGRES_SCHEMA_VERSION } from '../../src/log/postgres-schema.js';
import { tempDir } from '../support/harness.js';
import { call, settled } from '../support/http.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';
import { privateCluster } from '../support/postgres-cluster.js';
import { runToExit, type Service, startService } from '../support/service.js';

const cluster = privateCluster(t);

let schemas = 0;
async function setup(t: Test) {
  // A data directory of its own for every start: what survives is in the store, not on this disk.
  const env = { COMMITD_STORE_URL: cluster().url(), COMMITD_STORE_SCHEMA: `crash_${++schemas}` };
  const a = await startParticipant();
  const b = await startParticipant();
  const services: Service[] = [];
  t.teardown(async () => {
    for (const s of services) await s.kill();
    await a.close();
    await b.close();
  });
  const start = async () => {
    const s = await startService(tempDir('commitd-pg-crash-'), env);
    services.push(s);
    return s;
  };
  const participants = [
    { name: 'orders', url: a.url },
    { name: 'payments', url: b.url },
  ];
  return { a, b, start, participants, schema: env.COMMITD_STORE_SCHEMA };
}

const statesOf = (id: string, ...ps: TestParticipant[]) => ps.map((p) => p.states.get(id));

t.test('killed after the commit decision, before any participant heard it: the restart commits', async (t) => {
  const { a, b, start, participants } = await setup(t);
  let s = await start();
  const dropCommit = (m: any) => (m.action === 'commit' ? ('hang' as const) : undefined);
  a.behavior = dropCommit;
  b.behavior = dropCommit;
  const pending = call(s.url, 'POST', '/v1/transactions', { participants, commit: true }).catch((e) => e);
  await waitUntil(() => a.count('commit') === 1 && b.count('commit') === 1);
  const id = a.received[0]?.txId as string;
  await s.kill('SIGKILL');
  await pending;
  a.behavior = null;
  b.behavior = null;

  s = await start();
  const tx = await settled(s.url, id);
  t.equal(tx.outcome, 'commit', 'the decision in the store is final');
  t.same(statesOf(id, a, b), ['committed', 'committed']);
});

t.test('killed with every participant prepared and no decision: the restart aborts at both', async (t) => {
  const { a, b, start, participants } = await setup(t);
  let s = await start();
  const prepareThenHang = (m: any, p: TestParticipant) => {
    if (m.action !== 'prepare') return undefined;
    p.states.set(m.txId, 'prepared');
    return 'hang' as const;
  };
  a.behavior = prepareThenHang;
  b.behavior = prepareThenHang;
  const pending = call(s.url, 'POST', '/v1/transactions', { participants, commit: true }).catch((e) => e);
  await waitUntil(() => a.count('prepare') === 1 && b.count('prepare') === 1);
  const id = a.received[0]?.txId as string;
  await s.kill('SIGKILL');
  await pending;
  a.behavior = null;
  b.behavior = null;

  s = await start();
  const tx = await settled(s.url, id);
  t.equal(tx.outcome, 'abort');
  t.same(statesOf(id, a, b), ['aborted', 'aborted'], 'no participant is left prepared');
});

t.test('commits acknowledged to their clients survive an immediate SIGKILL', async (t) => {
  const { a, b, start, participants } = await setup(t);
  let s = await start();
  const answers = await Promise.all(
    Array.from({ length: 20 }, () => call(s.url, 'POST', '/v1/transactions', { participants, commit: true })),
  );
  await s.kill('SIGKILL');
  s = await start();
  for (const answer of answers) {
    t.equal(answer.status, 200);
    t.equal((await call(s.url, 'GET', `/v1/transactions/${answer.body.id}`)).body.state, 'committed');
    t.same(statesOf(answer.body.id, a, b), ['committed', 'committed']);
  }
});

t.test('a store whose schema is newer than this commitd stops it at start: exit 4, both versions named', async (t) => {
  const schema = 'crash_newer';
  await cluster().query(`CREATE SCHEMA ${schema}`);
  await cluster().query(`CREATE TABLE ${schema}.schema_version (one boolean PRIMARY KEY, version integer NOT NULL)`);
  await cluster().query(`INSERT INTO ${schema}.schema_version VALUES (true, $1)`, [POSTGRES_SCHEMA_VERSION + 1]);
  const run = await runToExit(tempDir('commitd-pg-newer-'), {
    COMMITD_STORE_URL: cluster().url(),
    COMMITD_STORE_SCHEMA: schema,
  });
  t.equal(run.code, 4, run.output);
  t.match(run.output, `schema version ${POSTGRES_SCHEMA_VERSION + 1}, newer than this commitd knows`);
});
