// How the service process starts and stops: a second instance on the same
// data directory is refused; SIGTERM stops cleanly and keeps everything; a
// bad configuration stops it with a clear message.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startParticipant } from '../support/participant.js';
import { runToExit, startService } from '../support/service.js';

t.test('a second instance on the same data directory is refused with a clear error', async (t) => {
  const dataDir = tempDir('commitd-lock-');
  const first = await startService(dataDir);
  t.teardown(() => first.kill());
  const second = await runToExit(dataDir);
  t.equal(second.code, 3, 'exit code 3: log locked');
  t.match(second.output, /locked by another process/);
  t.match(second.output, /is another commitd running/);
  const health = await call(first.url, 'GET', '/readyz');
  t.equal(health.status, 200, 'the first instance is unharmed');
  await first.kill('SIGKILL');
  const third = await startService(dataDir);
  t.equal((await call(third.url, 'GET', '/readyz')).status, 200, 'the lock dies with its process');
  await third.kill('SIGTERM');
});

t.test('SIGTERM: finishes, exits 0, and the next start has everything', async (t) => {
  const dataDir = tempDir('commitd-term-');
  const a = await startParticipant();
  t.teardown(() => a.close());
  const s = await startService(dataDir);
  const answer = await call(s.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'orders', url: a.url }],
    commit: true,
  });
  t.equal(answer.status, 200);
  const begun = await call(s.url, 'POST', '/v1/transactions', { participants: [{ name: 'orders', url: a.url }] });
  t.equal(begun.status, 201);
  t.equal(await s.kill('SIGTERM'), 0, 'clean exit');
  t.match(s.output(), /stopped/);

  const again = await startService(dataDir);
  t.teardown(() => again.kill());
  t.equal((await call(again.url, 'GET', `/v1/transactions/${answer.body.id}`)).body.state, 'committed');
  t.equal((await call(again.url, 'GET', `/v1/transactions/${begun.body.id}`)).body.state, 'active');
});

t.test('a bad configuration value stops commitd with a message naming the variable', async (t) => {
  const result = await runToExit(tempDir(), { COMMITD_PREPARE_TIMEOUT_MS: 'soon' });
  t.equal(result.code, 2);
  t.match(result.output, /COMMITD_PREPARE_TIMEOUT_MS must be an integer/);
});

t.test('the deployment identity is kept in the store; another one configured later is refused', async (t) => {
  const dataDir = tempDir('commitd-deployment-');
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const first = await startService(dataDir, { COMMITD_DEPLOYMENT_ID: 'blue' });
  t.equal(await first.kill('SIGTERM'), 0);
  const again = await startService(dataDir, { COMMITD_DEPLOYMENT_ID: 'blue' });
  t.equal(await again.kill('SIGTERM'), 0, 'the same one: starts');
  const unset = await startService(dataDir);
  t.equal(await unset.kill('SIGTERM'), 0, 'unset: the kept one is used');
  const other = await runToExit(dataDir, { COMMITD_DEPLOYMENT_ID: 'green' });
  t.equal(other.code, 2, 'another one: a configuration error');
  t.match(other.output, /COMMITD_DEPLOYMENT_ID\) is 'green', but the decision store belongs to deployment 'blue'/);
});

t.test('a data directory that is not a decision log is refused, never served', async (t) => {
  const dataDir = tempDir('commitd-garbage-');
  fs.writeFileSync(path.join(dataDir, 'commitd.db'), Buffer.alloc(8192, 0x5a));
  const result = await runToExit(dataDir);
  t.equal(result.code, 4);
  t.match(result.output, /decision log .* (unusable|not a database)/);
});
