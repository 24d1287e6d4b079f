// Secure by default (issue 9): the container image used to bind 0.0.0.0 with
// no token and start open without a word. Now a commitd without tokens serves
// only on loopback; elsewhere it refuses to start (exit 2, naming the
// setting) unless COMMITD_INSECURE=true, which it then announces.

import fs from 'node:fs';
import t from 'tap';
import { exposure } from '../../src/security/exposure.js';
import { tempDir } from '../support/harness.js';
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
