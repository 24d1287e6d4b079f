// The orders example end to end, as `npm run example:orders` runs it (on the
// already built dist): nats-server, commitd, the orders service and the
// shipping consumer with the inbox as real processes.

import { execFile } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';

const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
  const child = execFile(
    process.execPath,
    [path.join(PACKAGE_ROOT, 'examples', 'orders', 'run.mjs')],
    { timeout: 120_000 },
    (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout: stdout + stderr }),
  );
});

t.test('examples/orders/run.mjs ends consistent', async (t) => {
  t.equal(code, 0, stdout);
  t.notMatch(stdout, /INCONSISTENT/);
  t.match(stdout, /\nconsistent\n$/);
});

t.test('the inbox ships an event stored twice once', async (t) => {
  t.match(stdout, /the stream kept the second copy too \(duplicate: false\)/);
  t.match(stdout, /shipping: applied example:tx-replayed:order-placed, duplicate example:tx-replayed:order-placed/);
  t.match(stdout, /shipments for tx-replayed: 1\n/);
});

// Needs the coordinator's message participants (issue 21, built in parallel):
// this skip goes when they are merged.
const commitdHalf = /commitd half: skipped: (.*)/.exec(stdout);
t.test(
  'an order and its event commit together; an aborted order publishes nothing',
  { skip: commitdHalf?.[0] ?? false },
  async (t) => {
    t.match(stdout, /(committed|committing); order confirmed; shipments 1\n/);
    t.match(stdout, /aborted \(only \d+ teapot left\); order cancelled/);
    t.match(stdout, /events in the stream: 1 \(only the committed order's\); shipments for it: 0/);
  },
);
