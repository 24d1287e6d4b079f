// The simulator's decision log (test/sim/sim-log.ts) against the same
// DecisionLog contract as the SQLite log (log-contract.ts): what the
// simulation proves holds for a log that behaves like the real one.

import t from 'tap';
import { Checks } from '../sim/checks.js';
import { SimLog } from '../sim/sim-log.js';
import { Rng, World } from '../sim/world.js';
import { decisionLogContract } from './log-contract.js';

/** More than enough scheduled events for any case here; a bound, not a wait. */
const MAX_EVENTS = 1000;

decisionLogContract(t, (t) => {
  const world = new World(new Rng(1));
  const checks = new Checks(() => ({ atMs: world.now, step: world.steps }));
  const log = new SimLog(world, checks, 5);
  t.teardown(() => log.close());
  return {
    verify: (t) => t.same(checks.violations, [], "the simulator's own checks found nothing"),
    log,
    advance: async () => {
      for (let n = 0; n < MAX_EVENTS && (await world.step()); n++);
    },
  };
});
