// Which shards an instance takes and which it lets go, from one look at the
// shards table, the instances table and what its probes of the others said.
// Pure: the member (cluster-member.ts) does the I/O and acts on the plan.
//
// Safety never depends on this plan: every write is fenced by the shard's
// epoch (log/postgres-log.ts), so a wrong guess (taking from an owner that
// was only slow) costs repeated, idempotent messages, never atomicity. The
// plan is about speed: take what a dead owner left at once, on evidence,
// without waiting for its lease; and share the shards evenly.

import type { GoneKind } from './peer-probes.js';

export interface ShardRow {
  readonly shard: number;
  readonly owner: string | null;
  readonly epoch: number;
  /** The lease ran out, by the store's clock. */
  readonly expired: boolean;
}

export interface InstanceRow {
  readonly id: string;
  readonly url: string;
  /** Its heartbeat is within its lease, by the store's clock. */
  readonly live: boolean;
  /** Milliseconds since its last heartbeat, by the store's clock. */
  readonly quietMs: number;
}

export interface PlanInput {
  readonly self: string;
  readonly shards: readonly ShardRow[];
  readonly instances: readonly InstanceRow[];
  /** Instances the probes found gone (connection refused, another instance at the address, silent too long). */
  readonly dead: ReadonlySet<string>;
  /** Shards this instance owns now (as it believes). */
  readonly owned: ReadonlySet<number>;
}

/** Why a shard is taken: for the metrics and the log line. */
export type TakeReason = 'free' | 'owner-gone' | 'lease-expired' | 'reclaimed';

export interface Plan {
  /** Shards to take, each with the epoch seen (the take is conditional on it: two takers, one winner). */
  readonly take: ReadonlyArray<{ readonly shard: number; readonly seenEpoch: number; readonly reason: TakeReason }>;
  /** Shards to hand over (owned beyond a fair share while another instance has less than its share). */
  readonly release: readonly number[];
  /** The fair share: shards / instances alive. */
  readonly target: number;
}

/** Instances that count: alive by their heartbeat, not found gone by a probe; this one always. */
export function aliveInstances(input: Pick<PlanInput, 'self' | 'instances' | 'dead'>): Set<string> {
  const alive = new Set<string>([input.self]);
  for (const i of input.instances) if (i.live && !input.dead.has(i.id)) alive.add(i.id);
  return alive;
}

export function planShards(input: PlanInput): Plan {
  const alive = aliveInstances(input);
  const target = Math.ceil(input.shards.length / alive.size);
  const take: Array<Plan['take'][number]> = [];
  let owning = input.owned.size;
  // A shard whose owner is gone or whose lease ran out is taken whatever the
  // share: its transactions are waiting now. The balance comes later.
  for (const row of input.shards) {
    if (row.owner === input.self && !input.owned.has(row.shard)) {
      // The store still says this instance's, but it let go in hand (its
      // lease lapsed while the store was out of reach): taken again under a
      // new epoch, so nothing written under the old one counts.
      take.push({ shard: row.shard, seenEpoch: row.epoch, reason: 'reclaimed' });
      owning++;
      continue;
    }
    if (row.owner === null || row.owner === input.self) continue;
    const reason: TakeReason | null = !alive.has(row.owner) ? 'owner-gone' : row.expired ? 'lease-expired' : null;
    if (reason !== null) {
      take.push({ shard: row.shard, seenEpoch: row.epoch, reason });
      owning++;
    }
  }
  // Free shards (released, or never owned) up to the share.
  for (const row of input.shards) {
    if (owning >= target) break;
    if (row.owner !== null) continue;
    take.push({ shard: row.shard, seenEpoch: row.epoch, reason: 'free' });
    owning++;
  }
  // Hand over what is beyond the share, but only to someone short of theirs:
  // otherwise shards would move back and forth for nothing.
  const ownedBy = new Map<string, number>();
  for (const row of input.shards) {
    if (row.owner !== null && alive.has(row.owner)) ownedBy.set(row.owner, (ownedBy.get(row.owner) ?? 0) + 1);
  }
  const free = input.shards.filter((r) => r.owner === null).length;
  const short = [...alive].some((id) => id !== input.self && (ownedBy.get(id) ?? 0) < target - 1);
  const release: number[] = [];
  if (short && free === 0 && input.owned.size > target) {
    // The highest-numbered ones: any choice is as good, a stable one avoids churn.
    release.push(...[...input.owned].sort((a, b) => b - a).slice(0, input.owned.size - target));
  }
  return { take, release, target };
}

/**
 * Which instances count as gone: one whose address refuses connections (or
 * answers as another instance), at once; one silent to the probes only if
 * the store agrees it has not renewed its heartbeat for as long (paused, or
 * cut off from everything). One silent to its peers but still renewing is
 * partitioned from them, not gone: taking its shards would only have it
 * take them back, round after round.
 */
export function deadPeers(
  gone: ReadonlyMap<string, GoneKind>,
  instances: readonly InstanceRow[],
  silenceMs: number,
): Set<string> {
  const dead = new Set<string>();
  for (const [id, kind] of gone) {
    const quietMs = instances.find((i) => i.id === id)?.quietMs ?? Number.POSITIVE_INFINITY;
    if (kind === 'refused' || quietMs >= silenceMs) dead.add(id);
  }
  return dead;
}
