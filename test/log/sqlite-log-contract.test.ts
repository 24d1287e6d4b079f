// The SQLite decision log against the DecisionLog contract (log-contract.ts).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SqliteLog } from '../../src/log/sqlite-log.js';
import { decisionLogContract } from './log-contract.js';

decisionLogContract(t, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-log-contract-'));
  const errors: Error[] = [];
  const log = new SqliteLog({
    dataDir: dir,
    batchRecordsMax: 100,
    // Lazy records leave with a forced one or by an explicit flush().
    lazyFlushDelayMs: 60_000,
    onError: (e) => errors.push(e),
  });
  t.teardown(() => {
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    log,
    // Forced writes flush and fsync on their own; awaiting them is enough.
    advance: async () => {},
    verify: (t) => t.same(errors, [], 'the log reported no error'),
  };
});
