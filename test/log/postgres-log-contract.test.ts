// The PostgreSQL decision store against the DecisionLog contract
// (log-contract.ts), on a private PostgreSQL cluster: each case in a schema of
// its own, so each starts from an empty store.

import t from 'tap';
import { PostgresLog } from '../../src/log/postgres-log.js';
import { privateCluster } from '../support/postgres-cluster.js';
import { decisionLogContract } from './log-contract.js';

const cluster = privateCluster(t);

let cases = 0;
decisionLogContract(t, async (t) => {
  const errors: Error[] = [];
  const log = await PostgresLog.open({
    url: cluster().url(),
    schema: `contract_${++cases}`,
    batchRecordsMax: 100,
    // Lazy records leave with a forced one or by an explicit flush().
    lazyFlushDelayMs: 60_000,
    onError: (e) => errors.push(e),
  });
  t.teardown(() => log.close());
  return {
    log,
    // Forced writes commit on their own; awaiting them is enough.
    advance: async () => {},
    verify: (t) => t.same(errors, [], 'the store reported no error'),
  };
});
