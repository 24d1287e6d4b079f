// A simulated JetStream stream for message participants (issue 21): a
// publish may be lost on the way, stored with its acknowledgement lost,
// duplicated or delayed past the caller's time limit; the stream drops a
// publish whose Nats-Msg-Id it stored within its duplicate window, as
// JetStream does. The simulator checks at the end that every committed
// transaction's message is stored exactly once and no aborted one's ever.

import type { Rng, World } from './world.js';

export interface BrokerFaults {
  enabled: boolean;
}

export class SimBroker {
  /** msgId -> how many copies the stream holds. */
  readonly stored = new Map<string, number>();
  /** msgId -> when the stream last stored it (the duplicate window counts from there). */
  private readonly storedAtMs = new Map<string, number>();
  publishes = 0;
  down = false;

  constructor(
    private readonly world: World,
    /** A stream of draws of its own: the simulator's main draws stay what they were. */
    private readonly rng: Rng,
    private readonly faults: BrokerFaults,
    /** Longer than any simulated run: within it every republish is a duplicate. */
    private readonly duplicateWindowMs: number,
    private readonly lossRate: number,
    private readonly duplicateRate: number,
    private readonly delayRate: number,
  ) {}

  /** Stores the message unless a copy is within the window; `duplicate` as the PubAck says. */
  private store(msgId: string): { seq: number; duplicate: boolean } {
    const at = this.storedAtMs.get(msgId);
    if (at !== undefined && this.world.now - at <= this.duplicateWindowMs) return { seq: 1, duplicate: true };
    this.stored.set(msgId, (this.stored.get(msgId) ?? 0) + 1);
    this.storedAtMs.set(msgId, this.world.now);
    return { seq: ++this.publishes, duplicate: false };
  }

  /** One publish; `answer` hears the acknowledgement if it comes back (the caller times out otherwise). */
  publish(msgId: string, answer: (ack: { seq: number; duplicate: boolean }) => void): void {
    const faulty = this.faults.enabled;
    const rng = this.rng;
    if (this.down && faulty) return;
    if (faulty && rng.chance(this.lossRate)) return; // lost on the way
    const delay = () => (faulty && rng.chance(this.delayRate) ? rng.int(150, 1500) : rng.int(0, 5));
    const arrive = () => {
      const ack = this.store(msgId);
      if (faulty && rng.chance(this.lossRate)) return; // stored, the acknowledgement lost
      this.world.at(delay(), () => answer(ack));
    };
    this.world.at(delay(), arrive);
    if (faulty && rng.chance(this.duplicateRate)) this.world.at(delay(), arrive);
  }
}
