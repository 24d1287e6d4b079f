// The types a TypeScript user meets, compiled with tsc in strict mode on a
// fixture (test/package/fixtures/strict-consumer.ts): an async prepare's
// plain `return 'yes'`, a payload type that reaches commit and abort, and the
// client's three participant kinds; each line marked @ts-expect-error must
// stay an error (tsc reports an unused one).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { typeCheckStrict } from '../support/typescript.js';

t.test('the strict consumer fixture type-checks', async (t) => {
  const dir = tempDir('commitd-types-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = typeCheckStrict(dir, [path.join(PACKAGE_ROOT, 'test', 'package', 'fixtures', 'strict-consumer.ts')]);
  t.equal(r.status, 0, r.output);
});
