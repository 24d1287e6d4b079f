// The shop example end to end, as `npm run example:shop` runs it (on the
// already built dist): three real processes, two of them killed with -9.

import { execFile } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';

t.test('examples/shop/run.mjs ends consistent', async (t) => {
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      [path.join(PACKAGE_ROOT, 'examples', 'shop', 'run.mjs')],
      { timeout: 120_000 },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout: stdout + stderr }),
    );
  });
  t.equal(code, 0, stdout);
  t.match(stdout, /committed; order and payment: confirmed, captured/);
  t.match(stdout, /aborted \(card declined\); order: cancelled, no payment/);
  t.match(stdout, /restarted: prepared; commit/);
  t.match(stdout, /commit decided while payments is down: committing/);
  t.match(stdout, /payments back: order and payment: confirmed, captured/);
  t.notMatch(stdout, /INCONSISTENT/);
  t.match(stdout, /\nconsistent\n$/);
});
