// The participant address policy when commitd is exposed (issue 23), against
// real commitd processes and real participant listeners. Reproduced first: a
// commitd on 0.0.0.0 accepted a participant on loopback (its prepare and
// abort reached whatever listened there), and a commitd accepted its own
// address as a participant.

import fs from 'node:fs';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { startParticipant } from '../support/participant.js';
import { startService } from '../support/service.js';

const TOKEN = 'address-policy-client-token-0123456789';

async function api(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

t.test('listening on 0.0.0.0: loopback and private participants are refused unless listed', async (t) => {
  const participant = await startParticipant();
  t.teardown(() => participant.close());
  const port = new URL(participant.url).port;
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const service = await startService(dir, { COMMITD_HOST: '0.0.0.0', COMMITD_TOKENS: `client:${TOKEN}` });
  t.teardown(() => service.kill());
  for (const [url, rule] of [
    [participant.url, 'loopback'],
    [`http://localhost:${port}/tx`, 'loopback'],
    [`http://[::1]:${port}/tx`, 'loopback'],
    [`http://[::ffff:127.0.0.1]:${port}/tx`, 'loopback'],
    ['http://10.1.2.3/tx', 'private'],
    ['http://172.16.0.9/tx', 'private'],
    ['http://192.168.1.1/tx', 'private'],
    ['http://[fd12::1]/tx', 'private'],
    ['http://[2002:7f00:1::]/tx', 'loopback'],
  ] as const) {
    const begin = await api(service.url, 'POST', '/v1/transactions', {
      participants: [{ name: 'p', url }],
      commit: true,
    });
    t.equal(begin.status, 400, `${url} refused`);
    t.match(begin.body, { type: 'urn:commitd:problem:participant-url-refused', rule }, url);
    t.match(begin.body.detail, /COMMITD_PARTICIPANT_ORIGINS/, 'the detail names the setting that allows it');
  }
  t.equal(participant.received.length, 0, 'the participant on loopback heard nothing');
  // A public address (TEST-NET-3) is not this policy's business.
  const open = await api(service.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'p', url: 'http://203.0.113.7/tx' }],
  });
  t.equal(open.status, 201, 'a public address is accepted');
});

t.test(
  'listening on 0.0.0.0 with COMMITD_PARTICIPANT_ORIGINS: the listed loopback participant takes part',
  async (t) => {
    const participant = await startParticipant();
    t.teardown(() => participant.close());
    const origin = new URL(participant.url).origin;
    const dir = tempDir();
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const service = await startService(dir, {
      COMMITD_HOST: '0.0.0.0',
      COMMITD_TOKENS: `client:${TOKEN}`,
      COMMITD_PARTICIPANT_ORIGINS: origin,
    });
    t.teardown(() => service.kill());
    const begin = await api(service.url, 'POST', '/v1/transactions', {
      participants: [{ name: 'p', url: participant.url }],
      commit: true,
    });
    t.equal(begin.status, 200, JSON.stringify(begin.body));
    t.equal(begin.body.state, 'committed');
    t.equal(participant.count('prepare'), 1);
  },
);

t.test('a participant url that reaches a commitd instance is refused, on loopback too', async (t) => {
  const participant = await startParticipant();
  t.teardown(() => participant.close());
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const service = await startService(dir, { COMMITD_ADVERTISE_URL: 'http://commitd-1.example:8080' });
  t.teardown(() => service.kill());
  const own = new URL(service.url);
  for (const url of [
    `${service.url}/v1/transactions`,
    `http://localhost:${own.port}/`,
    `http://[::1]:${own.port}/v1`,
    'http://commitd-1.example:8080/v1/transactions',
  ]) {
    const begin = await api(service.url, 'POST', '/v1/transactions', { participants: [{ name: 'p', url }] });
    t.equal(begin.status, 400, `${url} refused`);
    t.match(begin.body, { rule: 'commitd' }, url);
  }
  const list = await api(service.url, 'GET', '/v1/transactions');
  t.equal(list.body.transactions?.length ?? list.body.items?.length ?? 0, 0, 'nothing was begun');
  // On loopback, another local service is still a participant (the quick start).
  const ok = await api(service.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'p', url: participant.url }],
    commit: true,
  });
  t.equal(ok.status, 200, JSON.stringify(ok.body));
  t.equal(ok.body.state, 'committed');
});
