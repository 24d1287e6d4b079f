// The chaos run in short (npm run chaos for the long one): the built
// coordinator and three durable participants as real processes, SIGKILLed at
// random moments under a load of one-shot commits, then a checker over the
// participants' own files, the clients' answers and the coordinator's
// outcomes. It runs the built script, as CI would, and needs `npm run build`.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { assertClean, runChaos } from '../support/chaos-script.js';

const CHAOS = path.join(PACKAGE_ROOT, 'dist', 'bench', 'chaos.js');
// What the run must show, asserted below. A slow or shared machine restarts
// a process in seconds and answers fewer transactions per second, so the run
// does not stop at SECONDS: load and faults go on until it has shown all of
// this, for at most MAX_SECONDS (see --min-* in bench/chaos.ts).
const MIN_COORDINATOR_KILLS = 3;
const MIN_TRANSACTIONS = 51;
const MIN_EACH_OUTCOME = 1;
const SECONDS = 20;
const MAX_SECONDS = 120;
// A fixed seed whose fault schedule has its first three coordinator kills
// early (within about 2.5 s of scheduled pauses).
const SEED = 65;

t.test('under random SIGKILLs every transaction has one outcome everywhere, as its client was told', async (t) => {
  t.ok(fs.existsSync(CHAOS), `${CHAOS} exists (npm run build)`);
  const run = await runChaos(t, CHAOS, 'chaos', {
    seconds: SECONDS,
    'max-seconds': MAX_SECONDS,
    seed: SEED,
    'min-coordinator-kills': MIN_COORDINATOR_KILLS,
    'min-answers': MIN_TRANSACTIONS,
    'min-each-outcome': MIN_EACH_OUTCOME,
  });
  assertClean(t, run);
  t.ok(
    run.field('coordinator_kills') >= MIN_COORDINATOR_KILLS,
    'the coordinator was killed at least 3 times',
    run.output,
  );
});
