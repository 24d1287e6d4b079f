// Secure by default (issue 9): the container image used to bind 0.0.0.0 with
// no token and start open without a word. Now a commitd without tokens serves
// only on loopback; elsewhere it refuses to start (exit 2, naming the
// setting) unless COMMITD_INSECURE=true, which it then announces.

import fs from 'node:fs';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { exposure } from '../../src/security/exposure.js';
import { tempDir } from '../support/harness.js';
import { waitUntil } from '../support/participant.js';
import { runToExit, startService } from '../support/service.js';

t.test('the rule', async (t) => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
    t.same(exposure(host, 0, false), { kind: 'ok' }, `${host} without a token`);
  }
  for (const host of ['0.0.0.0', '::', '10.0.0.5', 'commitd.internal', '::ffff:10.0.0.1', '128.0.0.1']) {
    const refused = exposure(host, 0, false);
    t.equal(refused.kind, 'refuse', `${host} without a token`);
    t.match(refused, { message: /COMMITD_HOST .* COMMITD_TOKENS .* COMMITD_INSECURE=true/ });
    t.equal(exposure(host, 0, true).kind, 'warn', `${host} without a token, insecure`);
    t.same(exposure(host, 1, false), { kind: 'ok' }, `${host} with a token`);
  }
});

t.test('the service refuses to start on a non-loopback host without a token', async (t) => {
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // It exits while checking its configuration, before it binds anything.
  const exited = await runToExit(dir, { COMMITD_HOST: '0.0.0.0' });
  t.equal(exited.code, 2, exited.output);
  t.match(exited.output, /COMMITD_HOST is 0\.0\.0\.0.*COMMITD_TOKENS/);
  t.notOk(fs.existsSync(`${dir}/commitd.db`), 'nothing was opened');
});

t.test('on loopback without a token it starts (the default)', async (t) => {
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const service = await startService(dir, {});
  t.teardown(() => service.kill());
  t.notMatch(service.output(), /INSECURE/);
  t.equal(await service.kill('SIGTERM'), 0);
});

t.test('a token or secret shorter than 16 characters is refused, and counts for nothing', async (t) => {
  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Before: accepted, and it counted as the token that lets commitd serve on 0.0.0.0.
  const exited = await runToExit(dir, { COMMITD_HOST: '0.0.0.0', COMMITD_AUTH_TOKEN: 'shorttoken' });
  t.equal(exited.code, 2, exited.output);
  t.match(exited.output, /server\.authToken \(COMMITD_AUTH_TOKEN\): a token must be at least 16 characters/);
  t.notMatch(exited.output, /shorttoken/, 'the value is not echoed');
  t.throws(() => loadConfig({ COMMITD_SIGNING_SECRET: 'short-secret' }), {
    name: ConfigError.name,
    message: /COMMITD_SIGNING_SECRET\): a secret must be at least 16 characters/,
  });
  t.equal(loadConfig({ COMMITD_SIGNING_SECRET: 'long-enough-secret-01' }).participants.signingSecret?.length, 21);
});

t.test('a participant token bound to no name is warned about at start; a bound one is not', async (t) => {
  const unbound = await startService(tempDir(), { COMMITD_TOKENS: 'participant:participant-token-0123456789' });
  t.teardown(() => unbound.kill());
  await waitUntil(async () => /not bound to names/.test(unbound.output()), 5_000, 'the warning');
  const bound = await startService(tempDir(), {
    COMMITD_TOKENS: 'participant@payments:participant-token-0123456789',
  });
  t.teardown(() => bound.kill());
  await waitUntil(async () => /commitd ready/.test(bound.output()), 5_000, 'ready');
  t.notMatch(bound.output(), /not bound to names/);
  t.notMatch(unbound.output(), /participant-token-0123456789/, 'the token itself is never logged');
});
