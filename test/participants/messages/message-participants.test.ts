// Message participants (issue 21) against a private nats-server with
// JetStream, commitd in-process: published on commit exactly once with its
// headers and body, never on abort; a broker that is down, paused or has no
// stream for the subject shows as attempts and lastError and the message goes
// out once it is back; bad input is refused and changes nothing.

import t, { type Test } from 'tap';
import { renderTransaction } from '../../../src/cli/render.js';
import { type Harness, startHarness } from '../../support/harness.js';
import { type NatsServer, natsServerAvailable, startNatsServer } from '../../support/nats-server.js';
import { createStream, exactlyOnce, type TestStream } from '../../support/nats-stream.js';
import { waitUntil } from '../../support/participant.js';

const missing = natsServerAvailable();
if (missing) {
  // .ci/run installs nats-server: in CI this is a failure, not a skip.
  t.fail(`nats-server is needed: ${missing}`);
  process.exit(1);
}

let broker: NatsServer;
t.before(async () => {
  broker = await startNatsServer();
});
t.teardown(() => broker.destroy());

async function harness(t: Test, natsUrl: string | null = broker.url): Promise<Harness> {
  const h = await startHarness({
    messages: { natsUrl },
    participants: { phaseTwoTimeoutMs: 500, retryDelayMsMin: 20, retryDelayMsMax: 200 },
  });
  t.teardown(() => h.close(true));
  return h;
}

async function stream(t: Test): Promise<TestStream> {
  const s = await createStream(broker.url);
  t.teardown(() => s.close());
  return s;
}

async function post(h: Harness, url: string, payload?: object) {
  const res = await h.app.inject({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) });
  return { status: res.statusCode, body: res.json() };
}

async function get(h: Harness, id: string) {
  return (await h.app.inject({ url: `/v1/transactions/${id}` })).json();
}

function message(subject: string, data: unknown = { order: 42 }, headers?: Record<string, string>) {
  return { name: 'order-placed', message: { subject, data, ...(headers ? { headers } : {}) } };
}

t.test('a commit publishes the message once, with its headers and exactly its data as body', async (t) => {
  const h = await harness(t);
  const s = await stream(t);
  const data = { order: 42, items: ['a', 'é'], nested: { ok: true } };
  const res = await post(h, '/v1/transactions', {
    commit: true,
    participants: [message(`${s.prefix}.placed`, data, { 'Content-Type': 'application/json', 'X-Tenant': 'acme' })],
  });
  t.equal(res.status, 200, JSON.stringify(res.body));
  const id = res.body.id as string;
  await waitUntil(async () => (await get(h, id)).state === 'committed', 5000);
  const stored = await s.read();
  t.equal(stored.length, 1);
  const m = stored[0];
  t.equal(m?.subject, `${s.prefix}.placed`);
  t.equal(m?.data, JSON.stringify(data));
  t.match(
    m?.headers['Nats-Msg-Id'],
    new RegExp(`^[0-9A-Za-z._-]+:${id}:order-placed$`),
    'deployment, transaction, participant',
  );
  t.equal(m?.headers['Commitd-Transaction-Id'], id);
  t.equal(m?.headers['Commitd-Participant'], 'order-placed');
  t.equal(m?.headers['X-Tenant'], 'acme');
  t.equal(m?.headers['Content-Type'], 'application/json');
  const view = await get(h, id);
  t.same(view.participants[0].message, { subject: `${s.prefix}.placed`, stream: s.name, seq: m?.seq });
  t.equal(view.participants[0].acknowledged, true);
  // The CLI's `show` prints where it went.
  t.match(renderTransaction(view), new RegExp(`message ${s.prefix}\\.placed stream ${s.name} seq ${m?.seq}`));
});

t.test('an abort never publishes; an enlisted message goes out with the commit', async (t) => {
  const h = await harness(t);
  const s = await stream(t);
  const aborted = await post(h, '/v1/transactions', { participants: [] });
  const enlist = await post(h, `/v1/transactions/${aborted.body.id}/participants`, message(`${s.prefix}.a`));
  t.equal(enlist.status, 201, JSON.stringify(enlist.body));
  // The same enlist again (a client's retry) changes nothing; another message under the name conflicts.
  t.equal((await post(h, `/v1/transactions/${aborted.body.id}/participants`, message(`${s.prefix}.a`))).status, 200);
  t.equal((await post(h, `/v1/transactions/${aborted.body.id}/participants`, message(`${s.prefix}.b`))).status, 409);
  t.equal((await post(h, `/v1/transactions/${aborted.body.id}/abort`)).status, 200);
  const committed = await post(h, '/v1/transactions', { participants: [] });
  await post(h, `/v1/transactions/${committed.body.id}/participants`, message(`${s.prefix}.c`));
  t.equal((await post(h, `/v1/transactions/${committed.body.id}/commit`)).status, 200);
  await waitUntil(async () => (await get(h, committed.body.id)).state === 'committed', 5000);
  const view = await get(h, aborted.body.id);
  t.equal(view.state, 'aborted');
  t.same(view.participants[0].message, { subject: `${s.prefix}.a`, stream: null, seq: null });
  const check = exactlyOnce(await s.read(), [committed.body.id], [aborted.body.id]);
  t.same(check, { duplicatesByTx: 0, duplicatesByMsgId: 0, lost: 0, publishedAborted: 0, checked: 1 });
});

t.test(
  'no stream for the subject: lastError says so, and the message goes out once a stream captures it',
  async (t) => {
    const h = await harness(t);
    const prefix = `nostream${Date.now()}`;
    const res = await post(h, '/v1/transactions', { commit: true, participants: [message(`${prefix}.x`)] });
    t.equal(res.status, 202, 'decided, phase two not finished');
    t.equal(res.body.outcome, 'commit', 'a broker that cannot store it never aborts the transaction');
    const id = res.body.id as string;
    let view: any;
    await waitUntil(async () => {
      view = await get(h, id);
      return (view.participants[0].attempts ?? 0) >= 2;
    }, 5000);
    t.equal(view.state, 'committing');
    t.match(view.participants[0].lastError, /no stream captures subject 'nostream\d+\.x'/);
    const s = await createStream(broker.url, 120_000, prefix);
    t.teardown(() => s.close());
    await waitUntil(async () => (await get(h, id)).state === 'committed', 5000);
    t.same(exactlyOnce(await s.read(), [id], []), {
      duplicatesByTx: 0,
      duplicatesByMsgId: 0,
      lost: 0,
      publishedAborted: 0,
      checked: 1,
    });
  },
);

t.test('the broker stopped, then paused, during phase two: retried, published once when it is back', async (t) => {
  const h = await harness(t);
  const s = await stream(t);
  // Connected first, so the outage hits an established connection.
  const first = await post(h, '/v1/transactions', { commit: true, participants: [message(`${s.prefix}.warm`)] });
  await waitUntil(async () => (await get(h, first.body.id)).state === 'committed', 5000);
  await broker.stop();
  const committed: string[] = [first.body.id];
  for (let i = 0; i < 5; i++) {
    const res = await post(h, '/v1/transactions', { commit: true, participants: [message(`${s.prefix}.down`)] });
    t.equal(res.body.outcome, 'commit', 'a broker outage never aborts');
    committed.push(res.body.id);
  }
  let view: any;
  await waitUntil(async () => {
    view = await get(h, committed[1] as string);
    return (view.participants[0].attempts ?? 0) >= 2;
  }, 5000);
  t.ok(view.participants[0].lastError, 'the failure shows');
  await broker.start();
  await waitUntil(async () => {
    for (const id of committed) if ((await get(h, id)).state !== 'committed') return false;
    return true;
  }, 10_000);
  // Paused: the connection stays up and publishes go unanswered.
  broker.pause();
  const paused = await post(h, '/v1/transactions', { commit: true, participants: [message(`${s.prefix}.paused`)] });
  committed.push(paused.body.id);
  await waitUntil(async () => ((await get(h, paused.body.id)).participants[0].attempts ?? 0) >= 1, 5000);
  t.match((await get(h, paused.body.id)).participants[0].lastError, /no publish acknowledgement within/);
  broker.resume();
  await waitUntil(async () => (await get(h, paused.body.id)).state === 'committed', 10_000);
  const check = exactlyOnce(await s.read(), committed, []);
  t.same(check, {
    duplicatesByTx: 0,
    duplicatesByMsgId: 0,
    lost: 0,
    publishedAborted: 0,
    checked: committed.length,
  });
});

t.test('bad message participants are refused and change nothing', async (t) => {
  const h = await harness(t);
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['wildcard *', message('orders.*'), 400, /wildcard/],
    ['wildcard >', message('orders.>'), 400, /wildcard/],
    ['empty token', message('orders..placed'), 400, /empty token/],
    ['space', message('orders placed'), 400, /visible ASCII/],
    ['system subject', message('$JS.API.STREAM.DELETE.X'), 400, /system subject/],
    [
      'CR LF in a header value',
      message('orders.placed', 1, { 'X-A': 'a\r\nNats-Expected-Stream: X' }),
      400,
      /CR or LF/,
    ],
    ['colon in a header name', message('orders.placed', 1, { 'X:A': 'a' }), 400, /header name/],
    ['reserved header', message('orders.placed', 1, { 'Nats-Msg-Id': 'mine' }), 400, /reserved/],
    ['commitd header', message('orders.placed', 1, { 'commitd-participant': 'x' }), 400, /reserved/],
    ['message and url', { ...message('orders.placed'), url: 'http://127.0.0.1:1' }, 400, /one or the other/],
    ['message and payload', { ...message('orders.placed'), payload: 1 }, 400, /not a payload/],
    ['no data', { name: 'm', message: { subject: 'orders.placed' } }, 400, /data/],
    ['too large', message('orders.placed', 'x'.repeat(h.config.transactions.maxPayloadBytes)), 413, /larger than/],
  ];
  for (const [what, participant, status, detail] of cases) {
    const res = await post(h, '/v1/transactions', { participants: [participant] });
    t.equal(res.status, status, what);
    t.match(res.body.detail ?? res.body.message, detail, what);
  }
  const listed = (await h.app.inject({ url: '/v1/transactions' })).json();
  t.equal(listed.transactions.length, 0, 'nothing was begun');
});

t.test('without COMMITD_NATS_URL a message participant is refused with 400 naming the setting', async (t) => {
  const h = await harness(t, null);
  const res = await post(h, '/v1/transactions', { commit: true, participants: [message('orders.placed')] });
  t.equal(res.status, 400);
  t.match(res.body.detail, /COMMITD_NATS_URL/);
  const active = await post(h, '/v1/transactions', { participants: [] });
  const enlist = await post(h, `/v1/transactions/${active.body.id}/participants`, message('orders.placed'));
  t.equal(enlist.status, 400);
  t.match(enlist.body.detail, /COMMITD_NATS_URL/);
});

t.test('credentials in the broker URL never show in a lastError or a log line', async (t) => {
  const secured = await startNatsServer(['--user', 'svc', '--pass', 's3cret-pass']);
  t.teardown(() => secured.destroy());
  const wrong = `nats://svc:wrong-s3cret@127.0.0.1:${secured.port}`;
  const h = await harness(t, wrong);
  const res = await post(h, '/v1/transactions', { commit: true, participants: [message('orders.placed')] });
  let view: any;
  await waitUntil(async () => {
    view = await get(h, res.body.id);
    return (view.participants[0].attempts ?? 0) >= 1;
  }, 5000);
  t.ok(view.participants[0].lastError);
  t.notMatch(view.participants[0].lastError, /wrong-s3cret/);
  for (const e of h.errors) t.notMatch(e.message, /wrong-s3cret/);
});
