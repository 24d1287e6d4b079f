// The multi-instance chaos run in short (npm run chaos:cluster for the long
// one): a private PostgreSQL cluster, three commitd instances sharing one
// store on it and three durable participants, all real processes, under a
// load sent round-robin through every instance (so calls are forwarded to
// the owner), with instances SIGKILLed and paused past their lease,
// PostgreSQL restarted and participants killed; then the checker over the
// participants' files, the clients' answers, the outcomes and every
// instance's view. It runs the built script and needs `npm run build`.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { assertClean, runChaos } from '../support/chaos-script.js';
import { postgresAvailable } from '../support/postgres-cluster.js';

const CLUSTER_CHAOS = path.join(PACKAGE_ROOT, 'dist', 'bench', 'cluster-chaos.js');
const INSTANCES = 3;
// What the run must show, asserted below; load and faults go on past SECONDS
// until it has shown all of this, for at most MAX_SECONDS (the --min-* flags).
const MIN_INSTANCE_KILLS = 1;
const MIN_INSTANCE_PAUSES = 1;
const MIN_PG_RESTARTS = 1;
const MIN_TRANSACTIONS = 51;
const MIN_EACH_OUTCOME = 1;
const SECONDS = 15;
const MAX_SECONDS = 30;
const LEASE_MS = 1500;
// A fixed seed whose schedule (instance faults every 1 to 3 s) pauses an
// instance at about 1.2 s and kills one at about 5.2 s of scheduled time;
// PostgreSQL restarts within 8 s.
const SEED = 23;

const missing = postgresAvailable();

t.test(
  'instances killed and paused, PostgreSQL restarted: one outcome everywhere, as clients were told and every instance says',
  { skip: missing === null ? false : `PostgreSQL is needed: ${missing}` },
  async (t) => {
    t.ok(fs.existsSync(CLUSTER_CHAOS), `${CLUSTER_CHAOS} exists (npm run build)`);
    const run = await runChaos(t, CLUSTER_CHAOS, 'cluster-chaos', {
      seconds: SECONDS,
      'max-seconds': MAX_SECONDS,
      seed: SEED,
      instances: INSTANCES,
      clients: 8,
      'lease-ms': LEASE_MS,
      'instance-fault-ms': '1000,3000',
      'pg-restart-ms': '3000,8000',
      'settle-timeout-s': 60,
      'min-instance-kills': MIN_INSTANCE_KILLS,
      'min-instance-pauses': MIN_INSTANCE_PAUSES,
      'min-pg-restarts': MIN_PG_RESTARTS,
      'min-answers': MIN_TRANSACTIONS,
      'min-each-outcome': MIN_EACH_OUTCOME,
    });
    assertClean(t, run);
    const { field, output } = run;
    t.equal(field('in_doubt'), 0, 'no participant left prepared', output);
    t.equal(field('instances'), INSTANCES, `${INSTANCES} instances`);
    t.ok(field('instance_kills') >= MIN_INSTANCE_KILLS, 'an instance was SIGKILLed', output);
    t.ok(field('instance_pauses') >= MIN_INSTANCE_PAUSES, 'an instance was paused past its lease', output);
    t.ok(field('pg_restarts') >= MIN_PG_RESTARTS, 'PostgreSQL was restarted', output);
  },
);
