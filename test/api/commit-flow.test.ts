import t from 'tap';
import { startHarness } from '../support/harness.js';
import { startParticipant, waitUntil } from '../support/participant.js';

t.test('one-shot commit across two participants commits at both', async (t) => {
  const h = await startHarness();
  const a = await startParticipant();
  const b = await startParticipant();
  t.teardown(async () => {
    await h.close(true);
    await a.close();
    await b.close();
  });
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    payload: {
      participants: [
        { name: 'orders', url: a.url, payload: { order: 1 } },
        { name: 'payments', url: b.url },
      ],
      commit: true,
    },
  });
  t.equal(res.statusCode, 200, res.body);
  const tx = res.json();
  t.equal(tx.state, 'committed');
  t.equal(tx.outcome, 'commit');
  t.equal(res.headers.location, `/v1/transactions/${tx.id}`);
  t.equal(a.states.get(tx.id), 'committed');
  t.equal(b.states.get(tx.id), 'committed');
  t.same(a.received.find((m) => m.action === 'prepare')?.body.payload, { order: 1 });
  t.equal(a.received[0]?.headers['x-commitd-transaction'], tx.id);
});

t.test('/readyz: 503 while the decision log cannot be written, 200 again once it can', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close(true));
  t.equal((await h.app.inject({ url: '/readyz' })).statusCode, 200);
  h.readiness.logWritable = false;
  const down = await h.app.inject({ url: '/readyz' });
  t.equal(down.statusCode, 503);
  t.match(down.json(), { status: 503, detail: 'the decision log cannot be written' });
  h.readiness.logWritable = true;
  t.equal((await h.app.inject({ url: '/readyz' })).statusCode, 200);
});

t.test('fsyncs: a committed one-shot costs two (begin, decision), an aborted one only its begin', async (t) => {
  const h = await startHarness();
  const yes = await startParticipant();
  const no = await startParticipant((m) =>
    m.action === 'prepare' ? { status: 200, body: { vote: 'no' } } : undefined,
  );
  t.teardown(async () => {
    await h.close(true);
    await yes.close();
    await no.close();
  });
  const fsyncs = async () => (await h.metrics.logFsyncs.get()).values[0]?.value ?? 0;
  const oneShot = (urls: string[]) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { participants: urls.map((url, i) => ({ name: `p${i}`, url })), commit: true },
    });
  const settle = async (id: string) => {
    await waitUntil(async () => (await h.coordinator.reads.get(id)).finishedAtMs !== null);
    await h.log.flush();
  };

  let before = await fsyncs();
  const committed = await oneShot([yes.url, yes.url.replace('/tx', '/tx2')]);
  t.equal(committed.statusCode, 200);
  await settle(committed.json().id);
  t.equal((await fsyncs()) - before, 2, 'begin and the commit decision');

  before = await fsyncs();
  const aborted = await oneShot([yes.url, no.url]);
  t.equal(aborted.statusCode, 409);
  await settle(aborted.json().transaction.id);
  t.equal((await fsyncs()) - before, 1, 'the begin record only: the abort and the end are lazy');
});
