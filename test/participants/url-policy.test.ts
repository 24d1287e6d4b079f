// The participant URL policy (issue 9, SSRF), every spelling the probe tried
// and more: the module alone here; over the API in
// test/security/participant-urls.test.ts.

import t from 'tap';
import { CommitdOrigins } from '../../src/participants/self-origins.js';
import {
  addressRule,
  checkParticipantUrl,
  embeddedIpv4,
  internalRefused,
  parseAllowedPrefixes,
} from '../../src/participants/url-policy.js';

const refusedSpellings: Array<[string, string]> = [
  ['http://169.254.169.254/latest/meta-data', 'link-local'],
  ['http://[::ffff:169.254.169.254]/', 'link-local'],
  ['http://[0:0:0:0:0:ffff:a9fe:a9fe]/', 'link-local'],
  ['http://[::ffff:a9fe:a9fe]/', 'link-local'],
  ['http://[::169.254.169.254]/', 'link-local'],
  ['http://[64:ff9b::169.254.169.254]/', 'link-local'],
  ['http://2852039166/', 'link-local'],
  ['http://0xA9FEA9FE/', 'link-local'],
  ['http://0xa9.0xfe.0xa9.0xfe/', 'link-local'],
  ['http://0251.0376.0251.0376/', 'link-local'],
  ['http://00000251.0376.0251.0376/', 'link-local'],
  ['http://169.254.43518/', 'link-local'],
  ['http://169.16689662/', 'link-local'],
  ['http://169.254.169.254./', 'link-local'],
  ['http://[fe80::1]/', 'link-local'],
  ['http://[FEBF::1]/', 'link-local'],
  ['http://0.0.0.0:22/', 'unspecified'],
  ['http://0/', 'unspecified'],
  ['http://0x0:6379/', 'unspecified'],
  ['http://000.000.000.000/', 'unspecified'],
  ['http://[::]/', 'unspecified'],
  ['http://[0:0:0:0:0:0:0:0]:22/', 'unspecified'],
  ['http://[::ffff:0.0.0.0]/', 'unspecified'],
  ['http://224.0.0.1/', 'multicast'],
  ['http://239.255.255.250:1900/', 'multicast'],
  ['http://3758096385/', 'multicast'],
  ['http://[ff02::1]/', 'multicast'],
  ['http://[::ffff:224.0.0.1]/', 'multicast'],
  ['http://255.255.255.255/', 'broadcast'],
  ['http://4294967295/', 'broadcast'],
  ['http://0xffffffff/', 'broadcast'],
  ['http://[::ffff:255.255.255.255]/', 'broadcast'],
  ['http://240.0.0.1/', 'reserved'],
  ['http://user:pw@127.0.0.1:8080/tx', 'user-info'],
  ['http://user@127.0.0.1:8080/tx', 'user-info'],
  ['http://:pw@127.0.0.1:8080/tx', 'user-info'],
  ['http://127.0.0.1:8080/tx?x=1', 'query-or-fragment'],
  ['http://127.0.0.1:8080/tx#f', 'query-or-fragment'],
  ['ftp://127.0.0.1/tx', 'scheme'],
  ['file:///etc/passwd', 'scheme'],
  ['gopher://127.0.0.1:6379/_FLUSHALL', 'scheme'],
  ['not a url', 'scheme'],
];

t.test('refused in every spelling, naming the rule', async (t) => {
  for (const [url, rule] of refusedSpellings) {
    const verdict = checkParticipantUrl(url, []);
    t.match(verdict, { ok: false, rule }, `${url}: ${rule}`);
  }
});

t.test('ordinary addresses pass when no allowlist is set', async (t) => {
  for (const url of [
    'http://127.0.0.1:8080/tx',
    'http://localhost:6379/',
    'https://payments.internal:8443/2pc',
    'http://10.1.2.3/tx',
    'http://[::1]:8080/tx',
    'http://[2001:db8::1]/tx',
    'http://[::ffff:10.0.0.1]/tx',
    'http://169.253.255.255/',
    'http://169.255.0.0/',
    'http://[fec0::1]/',
    'http://223.255.255.255/',
  ]) {
    t.match(checkParticipantUrl(url, []), { ok: true }, url);
  }
});

t.test('with an allowlist, only URLs under one of its origins or prefixes pass', async (t) => {
  const allowed = parseAllowedPrefixes(['https://payments.internal:8443', 'http://127.0.0.1:9000/2pc/']);
  const pass = [
    'https://payments.internal:8443/tx',
    'https://PAYMENTS.internal:8443/',
    'http://127.0.0.1:9000/2pc',
    'http://127.0.0.1:9000/2pc/orders',
  ];
  const fail = [
    'http://payments.internal:8443/tx',
    'https://payments.internal/tx',
    'https://payments.internal:8444/tx',
    'https://payments.internal.evil:8443/tx',
    'http://127.0.0.1:9000/2pcx',
    'http://127.0.0.1:9000/',
    'http://127.0.0.1:9000/other/2pc',
    'http://localhost:9000/2pc',
    'http://localhost:6379/',
    'http://10.0.0.1/tx',
  ];
  for (const url of pass) t.match(checkParticipantUrl(url, allowed), { ok: true }, `${url} allowed`);
  for (const url of fail)
    t.match(checkParticipantUrl(url, allowed), { ok: false, rule: 'not-allowed' }, `${url} refused`);
  // The fixed rules hold inside an allowlist too.
  const meta = parseAllowedPrefixes(['http://169.254.169.254']);
  t.match(checkParticipantUrl('http://169.254.169.254/', meta), { ok: false, rule: 'link-local' });
  t.throws(() => parseAllowedPrefixes(['payments.internal']), /not a URL/);
  t.throws(() => parseAllowedPrefixes(['ftp://x']), /not an http/);
  t.throws(() => parseAllowedPrefixes(['https://u:p@x']), /user-info/);
});

t.test('addresses as a resolver returns them', async (t) => {
  t.equal(addressRule('169.254.169.254'), 'link-local');
  t.equal(addressRule('::ffff:169.254.169.254'), 'link-local');
  t.equal(addressRule('fe80::abcd%eth0'.split('%')[0] as string), 'link-local');
  t.equal(addressRule('0.0.0.0'), 'unspecified');
  t.equal(addressRule('::'), 'unspecified');
  t.equal(addressRule('127.0.0.1'), null);
  t.equal(addressRule('::1'), null);
  t.equal(addressRule('10.0.0.1'), null);
  t.equal(addressRule('not-an-ip'), null);
  t.equal(embeddedIpv4('::ffff:a9fe:a9fe'), '169.254.169.254');
  t.equal(embeddedIpv4('64:ff9b::a9fe:a9fe'), '169.254.169.254');
  t.equal(embeddedIpv4('::a9fe:a9fe'), '169.254.169.254');
  t.equal(embeddedIpv4('::1'), null, '::1 is loopback, not an IPv4-compatible address');
  t.equal(embeddedIpv4('::'), null);
  t.equal(embeddedIpv4('2001:db8::a9fe:a9fe'), null);
});

t.test('issue 23: more forbidden ranges, and forbidden IPv4 in 6to4 and NAT64 spellings', async (t) => {
  for (const [url, rule] of [
    ['http://100.100.100.200/latest/meta-data', 'reserved'],
    ['http://100.64.0.1/', 'reserved'],
    ['http://100.127.255.255/', 'reserved'],
    ['http://192.0.0.9/', 'reserved'],
    ['http://168.63.129.16/metadata', 'metadata'],
    ['http://[fd00:ec2::254]/latest/meta-data', 'metadata'],
    ['http://[2002:a9fe:a9fe::]/', 'link-local'],
    ['http://[2002:a9fe:a9fe:1234:5678::1]/', 'link-local'],
    ['http://[2002:6464:64c8::]/', 'reserved'],
    ['http://[64:ff9b::a9fe:a9fe]/', 'link-local'],
    ['http://[64:ff9b:1::a9fe:a9fe]/', 'link-local'],
    ['http://[64:ff9b:1:ffff::a9fe:a9fe]/', 'link-local'],
    ['http://[64:ff9b::a83f:8110]/', 'metadata'],
    ['http://[2002:0:0::]/', 'unspecified'],
  ] as const) {
    t.match(checkParticipantUrl(url, []), { ok: false, rule }, `${url}: ${rule}`);
  }
  for (const url of ['http://100.63.255.255/', 'http://100.128.0.0/', 'http://192.0.1.1/', 'http://168.63.129.17/']) {
    t.match(checkParticipantUrl(url, []), { ok: true }, `${url}: just outside`);
  }
});

t.test(
  'issue 23: an encoded slash or backslash in the path is refused (it escapes an allowlisted prefix)',
  async (t) => {
    const allowed = parseAllowedPrefixes(['https://pay.example:8443/2pc']);
    for (const url of [
      'https://pay.example:8443/2pc/..%2f..%2fadmin',
      'https://pay.example:8443/2pc/..%2F..%2Fadmin',
      'https://pay.example:8443/2pc/..%5cadmin',
      'https://pay.example:8443/2pc/%5C',
    ]) {
      t.match(checkParticipantUrl(url, allowed), { ok: false, rule: 'encoded-slash' }, url);
      t.match(checkParticipantUrl(url, []), { ok: false, rule: 'encoded-slash' }, `${url} without a list`);
    }
    t.match(checkParticipantUrl('https://pay.example:8443/2pc/a%20b', allowed), { ok: true }, 'other escapes pass');
  },
);

t.test('issue 23: exposed with no allowlist, loopback and private addresses are refused', async (t) => {
  const exposed = { allowed: [], internalRefused: true, reachesCommitd: () => false };
  for (const [url, rule] of [
    ['http://127.0.0.1:8080/tx', 'loopback'],
    ['http://127.9.9.9/tx', 'loopback'],
    ['http://localhost:8080/tx', 'loopback'],
    ['http://LOCALHOST./tx', 'loopback'],
    ['http://app.localhost/tx', 'loopback'],
    ['http://[::1]/tx', 'loopback'],
    ['http://[::ffff:127.0.0.1]/tx', 'loopback'],
    ['http://[64:ff9b::7f00:1]/tx', 'loopback'],
    ['http://[2002:7f00:1::]/tx', 'loopback'],
    ['http://10.1.2.3/tx', 'private'],
    ['http://172.31.255.255/tx', 'private'],
    ['http://192.168.0.1/tx', 'private'],
    ['http://[fc00::1]/tx', 'private'],
    ['http://[fdff::1]/tx', 'private'],
    ['http://[::ffff:10.0.0.1]/tx', 'private'],
    ['http://[2002:0a00:0001::]/tx', 'private'],
  ] as const) {
    const verdict = checkParticipantUrl(url, exposed);
    t.match(verdict, { ok: false, rule }, `${url}: ${rule}`);
    t.match(verdict, { detail: /COMMITD_PARTICIPANT_ORIGINS/ });
    t.match(checkParticipantUrl(url, []), { ok: true }, `${url}: accepted on loopback`);
  }
  for (const url of ['http://172.32.0.1/tx', 'http://[2001:db8::1]/tx', 'https://pay.example/tx', 'http://11.0.0.1/']) {
    t.match(checkParticipantUrl(url, exposed), { ok: true }, `${url}: not internal`);
  }
  // An allowlist takes over: what it lists is the operator's choice.
  const listed = {
    allowed: parseAllowedPrefixes(['http://127.0.0.1:9000']),
    internalRefused: false,
    reachesCommitd: () => false,
  };
  t.match(checkParticipantUrl('http://127.0.0.1:9000/tx', listed), { ok: true });
  t.match(checkParticipantUrl('http://127.0.0.1:9001/tx', listed), { ok: false, rule: 'not-allowed' });
  t.equal(internalRefused(true, []), true);
  t.equal(internalRefused(true, listed.allowed), false);
  t.equal(internalRefused(false, []), false);
});

t.test('issue 23: a url reaching a commitd instance is refused in both modes, even when listed', async (t) => {
  const origins = new CommitdOrigins('0.0.0.0', 0, 'https://commitd-a.example', () => [
    'https://commitd-b.example:8443',
  ]);
  origins.listening(7070, null);
  const context = {
    allowed: parseAllowedPrefixes(['https://commitd-b.example:8443', 'http://127.0.0.1:7070']),
    internalRefused: false,
    reachesCommitd: (url: URL) => origins.reaches(url),
  };
  for (const url of [
    'https://commitd-a.example/v1/transactions',
    'https://commitd-b.example:8443/v1/transactions',
    'http://127.0.0.1:7070/v1',
    'http://localhost:7070/',
    'http://[::1]:7070/',
  ]) {
    t.match(checkParticipantUrl(url, context), { ok: false, rule: 'commitd' }, url);
  }
  t.notOk(origins.reaches(new URL('http://127.0.0.1:7071/')), 'another port');
  t.notOk(origins.reaches(new URL('https://commitd-b.example/')), "the peer's host on another port");
  const specific = new CommitdOrigins('10.0.0.5', 7070, null);
  t.ok(specific.reaches(new URL('http://10.0.0.5:7070/')), 'its specific listen address');
  t.notOk(specific.reaches(new URL('http://10.0.0.6:7070/')), 'another host');
});
