// A second deployment of commitd sharing the participants' database server
// (as two deployments share a MariaDB server, whose XA RECOVER lists every
// prepared transaction on it). Its orphan scan is the real one
// (OrphanScanner, orphanVerdict); its own log knows none of the simulated
// deployment's transactions, so every one it is allowed to look at is
// unknown to it: presumed abort. The scan must leave them all alone: what it
// rolled back would be a participant aborted behind the coordinator's back,
// which the participants' checks catch (a commit to an aborted participant,
// one participant committed while another aborted).

import { NotFoundError } from '../../src/coordinator/errors.js';
import { orphanVerdict } from '../../src/coordinator/orphan-verdict.js';
import type {
  DatabaseAdapter,
  FinishResult,
  PreparedTransaction,
} from '../../src/participants/databases/database-adapter.js';
import { OrphanScanner } from '../../src/participants/databases/orphan-scanner.js';
import type { SimParticipant } from './sim-participants.js';
import type { Rng, World } from './world.js';

/** The simulated deployment's identity: the names its participants are prepared under carry it. */
export const SIMULATED_DEPLOYMENT = 'sim-1';
const OTHER_DEPLOYMENT = 'sim-2';

/** The shared server as the other deployment's adapter sees it: every participant's prepared transactions. */
class SharedServer implements DatabaseAdapter {
  readonly kind = 'mysql' as const;
  readonly name = 'shared';
  readonly listsWholeServer = true;

  constructor(
    private readonly world: World,
    private readonly participants: () => Iterable<SimParticipant>,
  ) {}

  async findPrepared(): Promise<null> {
    return null; // the other deployment has no transactions of its own here
  }

  async finish(_message: 'commit' | 'abort', txId: string, participant: string): Promise<FinishResult> {
    for (const p of this.participants()) {
      if (p.name === participant && p.rollBackPrepared(txId)) return 'finished';
    }
    return 'absent';
  }

  async listPrepared(limit: number): Promise<PreparedTransaction[]> {
    const found: PreparedTransaction[] = [];
    for (const p of this.participants()) {
      for (const [txId, state] of p.states) {
        if (state !== 'prepared') continue;
        const ageMs = this.world.now - (p.preparedAtMs.get(txId) ?? this.world.now);
        found.push({ deployment: SIMULATED_DEPLOYMENT, txId, participant: p.name, ageMs });
      }
    }
    return found.slice(0, limit);
  }

  async close(): Promise<void> {}
}

/**
 * Schedules the other deployment's scans at random times within `untilMs`.
 * `sameDeployment`: a planted misconfiguration, both deployments under one
 * identity (what only an operator can choose), to show the checks catch
 * what such a scan does.
 */
export function scheduleOtherDeployment(
  world: World,
  rng: Rng,
  participants: () => Iterable<SimParticipant>,
  untilMs: number,
  sameDeployment: boolean,
): void {
  const knowsNothing = {
    outcome: async () => 'abort' as const,
    get: async (id: string): Promise<never> => {
      throw new NotFoundError(id);
    },
  };
  const scanner = new OrphanScanner({
    adapters: [new SharedServer(world, participants)],
    deployment: sameDeployment ? SIMULATED_DEPLOYMENT : OTHER_DEPLOYMENT,
    verdictOf: (txId, participant, database, presumeAbort) =>
      orphanVerdict(knowsNothing, txId, participant, database, presumeAbort),
    scanIntervalMs: 1000,
    safetyIntervalMs: rng.pick([0, 100, 500]),
    maxPerScan: 1000,
    onError: () => {},
    now: () => world.now,
  });
  for (let i = rng.int(2, 12); i > 0; i--) world.at(rng.int(0, untilMs), () => void scanner.scan());
}
