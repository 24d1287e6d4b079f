// SSRF through participant URLs (issue 9): every spelling the probe got
// accepted is now a 400 problem document naming the rule, on begin and on
// enlist, and changes nothing; the allowlist is enforced the same way.

import t from 'tap';
import { startHarness } from '../support/harness.js';

const PROBED: Array<[string, string]> = [
  ['http://169.254.169.254/latest/meta-data/', 'link-local'],
  ['http://[::ffff:169.254.169.254]/', 'link-local'],
  ['http://2852039166/', 'link-local'],
  ['http://0xA9FEA9FE/', 'link-local'],
  ['http://0251.0376.0251.0376/', 'link-local'],
  ['http://169.254.43518/', 'link-local'],
  ['http://0.0.0.0:22/', 'unspecified'],
  ['http://[::]:22/', 'unspecified'],
  ['http://224.0.0.251:5353/', 'multicast'],
  ['http://255.255.255.255/', 'broadcast'],
  ['http://admin:pw@127.0.0.1:6379/', 'user-info'],
];

t.test('begin and enlist refuse each spelling with a 400 naming the rule, changing nothing', async (t) => {
  const h = await startHarness({});
  t.teardown(() => h.close(true));
  const active = await h.app.inject({ method: 'POST', url: '/v1/transactions', payload: {} });
  const id = active.json().id;
  for (const [url, rule] of PROBED) {
    const begin = await h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      payload: { participants: [{ name: 'p', url }], commit: true },
    });
    t.equal(begin.statusCode, 400, `begin ${url}`);
    t.match(begin.headers['content-type'], /problem\+json/);
    t.match(begin.json(), { type: 'urn:commitd:problem:participant-url-refused', rule });
    t.match(begin.json().detail, new RegExp(rule === 'user-info' ? 'user-info' : rule), 'the detail names the rule');
    const enlist = await h.app.inject({
      method: 'POST',
      url: `/v1/transactions/${id}/participants`,
      payload: { name: 'p', url },
    });
    t.equal(enlist.statusCode, 400, `enlist ${url}`);
    t.match(enlist.json(), { rule });
  }
  t.equal(h.coordinator.inFlight, 1, 'no transaction was begun');
  t.same((await h.coordinator.reads.get(id)).participants, [], 'nobody was enlisted');
});

t.test('COMMITD_PARTICIPANT_ORIGINS: only listed origins and prefixes are accepted', async (t) => {
  const h = await startHarness({ participants: { participantOrigins: ['http://127.0.0.1:9000/2pc'] } });
  t.teardown(() => h.close(true));
  const begin = (url: string) =>
    h.app.inject({ method: 'POST', url: '/v1/transactions', payload: { participants: [{ name: 'p', url }] } });
  t.equal((await begin('http://127.0.0.1:9000/2pc/orders')).statusCode, 201, 'under the prefix');
  for (const url of [
    'http://localhost:6379/',
    'http://127.0.0.1:9001/2pc',
    'http://127.0.0.1:9000/',
    'http://metadata.google.internal/',
  ]) {
    const res = await begin(url);
    t.equal(res.statusCode, 400, url);
    t.match(res.json(), { rule: 'not-allowed' });
  }
  t.equal(h.coordinator.inFlight, 1, 'only the allowed one was begun');
});
