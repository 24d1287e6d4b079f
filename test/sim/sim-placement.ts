// Which transactions a simulated instance believes are its own. One shard
// (0) stands for all of them: a takeover moves everything at once. An
// instance that slept through a takeover goes on believing until it learns
// (its lease lapses, a write is refused); the store (the sim log's epoch)
// knows better, which is what confirmOwnership must ask.

import type { Placement, Whereabouts } from '../../src/coordinator/contract.js';
import type { SimLog } from './sim-log.js';

export class SimPlacement implements Placement {
  /** Still takes the transactions for its own. */
  believes = true;

  constructor(
    private readonly log: SimLog,
    /** The epoch it owns them under. */
    readonly epoch: number,
  ) {}

  shardForNew(): number | null {
    return this.believes ? 0 : null;
  }

  peerForNew(): string | null {
    return null;
  }

  whereIs(): Whereabouts {
    return this.believes ? { at: 'here' } : { at: 'nowhere' };
  }

  async confirmOwnership(): Promise<boolean> {
    return this.believes && this.log.ownerEpoch === this.epoch;
  }
}
