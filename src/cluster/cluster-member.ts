// One instance's part in a cluster of commitd on one PostgreSQL store: it
// says it is alive, renews the leases of the shards it owns, takes the shards
// others left (on a probe's evidence, or when a lease ran out by the store's
// clock), hands shards over to a newcomer and all of them on SIGTERM, and
// tells the coordinator which transactions to drive (adopt) and which to let
// go (drop). It also answers, for the log's fence, the epoch each shard is
// owned under, and, for the API, where a transaction's calls go.
//
// Safety is the fence's (every write carries the shard's epoch, checked in
// the write's own database transaction, log/postgres-log.ts) and the
// decision row's (insert-if-absent): this file is about liveness. Even so it
// stops acting on a shard before its lease can have run out from the store's
// point of view: the lease was renewed at most at the moment the renewal was
// sent, and a monotonic clock, minus a margin, says when that was.

import pg from 'pg';
import type { Placement, Whereabouts } from '../coordinator/contract.js';
import { quoted } from '../log/postgres-schema.js';
import { ID_SHARDS, shardOfId } from '../protocol/transaction-ids.js';
import { PeerProbes } from './peer-probes.js';
import { deadPeers, type InstanceRow, planShards, type ShardRow, type TakeReason } from './shard-plan.js';

export interface ClusterMemberOptions {
  readonly url: string;
  readonly schema: string;
  readonly instanceId: string;
  /** The lease, on the store's clock; renewed every probe interval. */
  readonly leaseMs: number;
  readonly probeIntervalMs: number;
  /** A peer that answers no probe for this long is taken to be gone. */
  readonly peerSilenceMs: number;
  readonly monotonicMs?: () => number;
  /** Loads and drives the unfinished transactions of these shards (resolves once they are in memory). */
  readonly adopt: (shards: readonly number[]) => Promise<void>;
  /** Stops driving the transactions of these shards at once (another instance will). */
  readonly drop: (shards: readonly number[]) => void;
  /** Writes what is queued: before a shard is handed over, what its owner decided goes first. */
  readonly flush: () => Promise<void>;
  readonly observer?: ClusterObserver;
  readonly onError?: (error: Error, context: string) => void;
  /** The private CA the other instances' certificates come from, or null. */
  readonly peerCa?: string | null;
}

export interface ClusterObserver {
  shardsOwned(count: number): void;
  taken(reason: TakeReason, shards: number): void;
  released(shards: number): void;
  lost(shards: number): void;
  peerGone(instanceId: string, why: string): void;
  /**
   * This process did not run for `gapMs` (paused, starved of CPU): past the
   * silence bound, so the others may have taken its shards; `leasesRunOut`
   * of those it held had their lease run out meanwhile and are let go now.
   */
  stalled(gapMs: number, leasesRunOut: number): void;
}

interface OwnedShard {
  readonly epoch: number;
  /** Monotonic ms after which this instance no longer acts on the shard, unless renewed. */
  validUntilMs: number;
  /** Its unfinished transactions are in memory: calls for them are served here. */
  loaded: boolean;
  /** Being handed over: no new transactions in it. */
  releasing: boolean;
}

/** Of the lease, the part kept in hand: stop acting this much before it can have run out. */
const LEASE_MARGIN_FRACTION = 0.25;

export class ClusterMember implements Placement {
  private readonly s: string;
  private readonly pool: pg.Pool;
  private readonly probes: PeerProbes;
  private readonly monotonicMs: () => number;
  private readonly owned = new Map<number, OwnedShard>();
  private shardsSeen: readonly ShardRow[] = [];
  /** Instances taken to be gone as of the last round (see deadPeers). */
  private dead: ReadonlySet<string> = new Set();
  private instancesSeen: readonly InstanceRow[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private nextShard = 0;
  private joined = false;
  /** When the interval last ran (monotonic): a gap past the silence bound means this process did not run. */
  private lastTickMs = 0;
  /** When this process last woke from such a gap; new work waits for a renewal sent after it. */
  private wokeAtMs = -1;
  /** The probes the last round started. */
  private probing: Promise<void> = Promise.resolve();
  /** When the last renewal the store answered was sent (monotonic). */
  private renewedSentAtMs = -1;
  /** How the other instances reach this one (forwarded calls, probes): known once it listens. */
  private advertiseUrl = '';

  constructor(private readonly o: ClusterMemberOptions) {
    this.s = quoted(o.schema);
    this.monotonicMs = o.monotonicMs ?? (() => performance.now());
    this.pool = new pg.Pool({
      connectionString: o.url,
      application_name: `commitd-member-${o.instanceId}`,
      max: 2,
      connectionTimeoutMillis: o.leaseMs,
      // A statement that takes longer than the lease is useless: the lease is gone by then.
      options: `-c statement_timeout=${o.leaseMs}`,
      query_timeout: o.leaseMs + 1_000,
    });
    this.pool.on('error', (error) => o.onError?.(error, 'the cluster connection'));
    this.probes = new PeerProbes({
      silenceMs: o.peerSilenceMs,
      timeoutMs: Math.max(o.probeIntervalMs, Math.floor(o.peerSilenceMs / 2)),
      monotonicMs: this.monotonicMs,
      gone: (id, why) => {
        o.observer?.peerGone(id, why);
        this.kick();
      },
      peerCa: o.peerCa ?? null,
    });
  }

  get instanceId(): string {
    return this.o.instanceId;
  }

  /**
   * Joins (one round: says it is alive, at `advertiseUrl`, and takes its
   * first shards), then keeps going every probe interval.
   */
  async start(advertiseUrl: string): Promise<void> {
    this.advertiseUrl = advertiseUrl;
    await this.round();
    if (!this.joined) throw new Error('cannot join the cluster: the store does not answer');
    // One probe of each other instance, then a second round, before serving:
    // the shards of one already gone (most often this one's own previous
    // incarnation, after a restart) are taken now, not a round after /readyz
    // said ready, when calls for their transactions would answer 503.
    await this.probing;
    await this.round();
    this.lastTickMs = this.monotonicMs();
    this.timer = setInterval(() => {
      if (this.stalled()) this.woke();
      this.lastTickMs = this.monotonicMs();
      // Apart from the round: a round waiting on an unreachable store must
      // not keep this instance acting on leases that may have run out.
      this.expire();
      this.kick();
    }, this.o.probeIntervalMs);
  }

  /** The epoch this instance owns the shard under, for the fence; null when it does not. */
  epochOf(shard: number): number | null {
    return this.owned.get(shard)?.epoch ?? null;
  }

  /** The store said the shard is no longer this instance's under `epoch` (a fenced write). */
  lost(shard: number, epoch: number): void {
    if (this.owned.get(shard)?.epoch !== epoch) return;
    this.owned.delete(shard);
    this.o.drop([shard]);
    this.o.observer?.lost(1);
    this.o.observer?.shardsOwned(this.owned.size);
    this.kick();
  }

  /** A shard for a new transaction, in turn; null when this instance owns none it can begin in. */
  shardForNew(): number | null {
    // Just back from not running past the silence bound (paused, starved):
    // the others may have taken every shard meanwhile, and the leases this
    // instance holds are no guide (the fence would refuse the begin's writes
    // and the caller hear 503). New work goes to a peer until a renewal sent
    // since says what is still this instance's.
    if (this.stalled() || this.renewedSentAtMs < this.wokeAtMs) return null;
    for (let i = 0; i < ID_SHARDS; i++) {
      const shard = (this.nextShard + i) % ID_SHARDS;
      const owned = this.owned.get(shard);
      if (owned?.loaded && !owned.releasing && owned.validUntilMs > this.monotonicMs()) {
        this.nextShard = shard + 1;
        return shard;
      }
    }
    return null;
  }

  /** Every instance's advertised URL as last seen, this one's included: no participant URL may reach one. */
  get instanceUrls(): readonly string[] {
    return this.instancesSeen.map((i) => i.url);
  }

  peerForNew(): string | null {
    const owners = new Set(this.shardsSeen.map((r) => r.owner));
    const alive = this.instancesSeen.filter((i) => i.id !== this.o.instanceId && i.live && !this.dead.has(i.id));
    // One that owns shards as last seen; else any that is alive: the view
    // may be from before shards moved (this instance's own hand-over, a
    // pause), and a peer that cannot begin it either answers 503 itself.
    const owning = alive.filter((i) => owners.has(i.id));
    const peers = owning.length > 0 ? owning : alive;
    if (peers.length === 0) return null;
    return (peers[Math.floor(Math.random() * peers.length)] as InstanceRow).url;
  }

  whereIs(txId: string): Whereabouts {
    const shard = shardOfId(txId);
    // Not an id: nobody has it; answered here (not found).
    if (shard === null) return { at: 'here' };
    const owned = this.owned.get(shard);
    if (owned) return owned.loaded && !owned.releasing ? { at: 'here' } : { at: 'nowhere' };
    const owner = this.shardsSeen.find((r) => r.shard === shard)?.owner ?? null;
    if (owner === null || owner === this.o.instanceId || this.dead.has(owner)) return { at: 'nowhere' };
    const url = this.instancesSeen.find((i) => i.id === owner && i.live)?.url;
    return url === undefined ? { at: 'nowhere' } : { at: 'peer', url };
  }

  async confirmOwnership(txId: string): Promise<boolean> {
    const shard = shardOfId(txId);
    if (shard === null) return true;
    const epoch = this.owned.get(shard)?.epoch;
    if (epoch === undefined) return false;
    const { rows } = await this.pool.query<{ owned: boolean }>(
      `SELECT owner = $1 AND epoch = $2 AS owned FROM ${this.s}.shards WHERE shard = $3`,
      [this.o.instanceId, epoch, shard],
    );
    return rows[0]?.owned === true;
  }

  /** What the cluster looks like from here (GET /v1/cluster). */
  view(): {
    self: string;
    shards: number;
    instances: Array<{ id: string; url: string; shards: number; self: boolean }>;
  } {
    const counts = new Map<string, number>();
    for (const r of this.shardsSeen) if (r.owner !== null) counts.set(r.owner, (counts.get(r.owner) ?? 0) + 1);
    counts.set(this.o.instanceId, this.owned.size);
    return {
      self: this.o.instanceId,
      shards: ID_SHARDS,
      instances: this.instancesSeen
        .filter((i) => (i.live && !this.dead.has(i.id)) || i.id === this.o.instanceId)
        .map((i) => ({ id: i.id, url: i.url, shards: counts.get(i.id) ?? 0, self: i.id === this.o.instanceId }))
        .sort((a, b) => (a.id < b.id ? -1 : 1)),
    };
  }

  /** Hands every shard over (what is queued is written first) and leaves: the others take them at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking?.catch(() => {});
    try {
      await this.release([...this.owned.keys()]);
      await this.pool.query(`DELETE FROM ${this.s}.instances WHERE id = $1`, [this.o.instanceId]);
    } catch (error) {
      // Not handed over: the others take the shards when their leases run out.
      this.o.onError?.(error as Error, 'handing the shards over');
    }
    await this.probes.close();
    await this.pool.end().catch(() => {});
  }

  /** Runs a round now, or right after the one running. */
  private kick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = this.round()
      .catch((error) => this.o.onError?.(error as Error, 'a cluster round'))
      .finally(() => {
        this.ticking = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** One round: expire, renew and look, probe, then take and hand over as the plan says. */
  private async round(): Promise<void> {
    this.expire();
    const sentAtMs = this.monotonicMs();
    const renewing = [...this.owned.entries()].filter(([, o]) => !o.releasing);
    let looked: { renewed: number[]; shards: ShardRow[]; instances: InstanceRow[] };
    try {
      looked = await this.renewAndLook(renewing.map(([shard, o]) => [shard, o.epoch]));
    } catch (error) {
      // The store is out of reach: the leases run out in hand (expire above).
      this.o.onError?.(error as Error, 'renewing the leases');
      return;
    }
    this.joined = true;
    this.renewedSentAtMs = sentAtMs;
    const renewed = new Set(looked.renewed);
    const validUntilMs = sentAtMs + this.o.leaseMs * (1 - LEASE_MARGIN_FRACTION);
    const lost: number[] = [];
    for (const [shard, owned] of renewing) {
      if (renewed.has(shard)) owned.validUntilMs = validUntilMs;
      else if (this.owned.get(shard) === owned) lost.push(shard);
    }
    this.dropOwned(lost);
    this.shardsSeen = looked.shards;
    this.instancesSeen = looked.instances;
    if (this.stopped) return;
    this.probing = this.probes.probe(looked.instances.filter((i) => i.id !== this.o.instanceId && i.live));
    this.dead = deadPeers(this.probes.gone(), looked.instances, this.o.peerSilenceMs);
    const plan = planShards({
      self: this.o.instanceId,
      shards: looked.shards,
      instances: looked.instances,
      dead: this.dead,
      owned: new Set(this.owned.keys()),
    });
    if (plan.take.length > 0) await this.take(plan.take);
    if (plan.release.length > 0) await this.release(plan.release);
  }

  /**
   * Back from not running past the silence bound: it is this process that
   * was silent, not its peers (the probes count their silence afresh). Says
   * so, with what it cost: the shards whose lease ran out meanwhile, which
   * expire() lets go right after.
   */
  private woke(): void {
    const now = this.monotonicMs();
    this.wokeAtMs = now;
    const runOut = [...this.owned.values()].filter((o) => o.validUntilMs <= now).length;
    this.o.observer?.stalled(now - this.lastTickMs, runOut);
  }

  /** The interval has not run for longer than the silence bound: this process was not running, or starved. */
  private stalled(): boolean {
    return this.lastTickMs > 0 && this.monotonicMs() - this.lastTickMs > this.o.peerSilenceMs;
  }

  /** Shards whose lease may have run out by now: let go before anyone else can take them. */
  private expire(): void {
    const now = this.monotonicMs();
    this.dropOwned([...this.owned.entries()].filter(([, o]) => o.validUntilMs <= now).map(([shard]) => shard));
  }

  private dropOwned(shards: number[]): void {
    if (shards.length === 0) return;
    for (const shard of shards) this.owned.delete(shard);
    this.o.drop(shards);
    this.o.observer?.lost(shards.length);
    this.o.observer?.shardsOwned(this.owned.size);
  }

  /** Says this instance is alive, renews its leases (those still under its epoch), and reads both tables. */
  private async renewAndLook(owned: Array<[number, number]>) {
    const { rows } = await this.pool.query<{ renewed: number[] | null; shards: ShardRow[]; instances: InstanceRow[] }>(
      `WITH me AS (
         INSERT INTO ${this.s}.instances (id, url, seen_at, seen_until)
         VALUES ($1, $2, now(), now() + $3 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, seen_at = excluded.seen_at, seen_until = excluded.seen_until
         RETURNING id
       ), mine AS (
         -- Shard rows are locked in shard order by every statement that
         -- locks several: no two of them wait for each other in a circle.
         SELECT s.shard FROM ${this.s}.shards s
         JOIN unnest($4::int[], $5::bigint[]) AS f(shard, epoch) ON s.shard = f.shard AND s.epoch = f.epoch
         WHERE s.owner = $1
         ORDER BY s.shard
         FOR UPDATE OF s
       ), renewed AS (
         UPDATE ${this.s}.shards s SET lease_until = now() + $3 * interval '1 millisecond'
         FROM mine WHERE s.shard = mine.shard
         RETURNING s.shard
       ), forgotten AS (
         -- Instances gone for an hour: their rows only clutter the view.
         DELETE FROM ${this.s}.instances WHERE seen_until < now() - interval '1 hour'
       )
       SELECT (SELECT array_agg(shard) FROM renewed) AS renewed,
         (SELECT json_agg(json_build_object('shard', shard, 'owner', owner, 'epoch', epoch,
            'expired', lease_until < now()) ORDER BY shard) FROM ${this.s}.shards) AS shards,
         (SELECT json_agg(json_build_object('id', id, 'url', url, 'live', id = $1 OR seen_until > now(),
            'quietMs', CASE WHEN id = $1 THEN 0 ELSE floor(extract(epoch FROM now() - seen_at) * 1000) END))
            FROM ${this.s}.instances) AS instances`,
      [this.o.instanceId, this.advertiseUrl, this.o.leaseMs, owned.map(([s]) => s), owned.map(([, e]) => e)],
    );
    const row = rows[0];
    return {
      renewed: row?.renewed ?? [],
      // The snapshot predates this statement's own renewals: shown as not expired.
      shards: (row?.shards ?? []).map((r) => ({ ...r, epoch: Number(r.epoch) })),
      instances: row?.instances ?? [],
    };
  }

  /** Takes shards, each only if still under the epoch seen (of two takers, one wins), then adopts them. */
  private async take(take: ReadonlyArray<{ shard: number; seenEpoch: number; reason: TakeReason }>): Promise<void> {
    const sentAtMs = this.monotonicMs();
    const { rows } = await this.pool.query<{ shard: number; epoch: string }>(
      `WITH seen AS (
         SELECT s.shard FROM ${this.s}.shards s
         JOIN unnest($3::int[], $4::bigint[]) AS f(shard, epoch) ON s.shard = f.shard AND s.epoch = f.epoch
         ORDER BY s.shard
         FOR UPDATE OF s
       )
       UPDATE ${this.s}.shards s
       SET owner = $1, epoch = s.epoch + 1, lease_until = now() + $2 * interval '1 millisecond'
       FROM seen WHERE s.shard = seen.shard
       RETURNING s.shard, s.epoch`,
      [this.o.instanceId, this.o.leaseMs, take.map((t) => t.shard), take.map((t) => t.seenEpoch)],
    );
    if (rows.length === 0) return;
    const validUntilMs = sentAtMs + this.o.leaseMs * (1 - LEASE_MARGIN_FRACTION);
    const taken = rows.map((r) => r.shard);
    const epochs = new Map(rows.map((r) => [r.shard, Number(r.epoch)]));
    for (const r of rows) {
      // Anything still in memory of an earlier ownership of this shard goes first.
      if (this.owned.has(r.shard)) this.o.drop([r.shard]);
      this.owned.set(r.shard, { epoch: Number(r.epoch), validUntilMs, loaded: false, releasing: false });
    }
    const byReason = new Map<TakeReason, number>();
    for (const t of take) if (taken.includes(t.shard)) byReason.set(t.reason, (byReason.get(t.reason) ?? 0) + 1);
    for (const [reason, n] of byReason) this.o.observer?.taken(reason, n);
    this.o.observer?.shardsOwned(this.owned.size);
    try {
      await this.o.adopt(taken);
      const gone: number[] = [];
      for (const shard of taken) {
        const owned = this.owned.get(shard);
        if (owned !== undefined && owned.epoch === epochs.get(shard)) owned.loaded = true;
        else gone.push(shard);
      }
      // Lost again while loading (its lease lapsed, a write was fenced): what
      // the load brought into memory is not this instance's to drive.
      if (gone.length > 0) this.o.drop(gone);
    } catch (error) {
      // Not loaded: let them go (another round, here or elsewhere, takes them again).
      this.o.onError?.(error as Error, 'loading the transactions of shards taken over');
      await this.release(taken.filter((shard) => this.owned.has(shard)));
    }
  }

  /**
   * Hands shards over: their transactions leave memory, what is queued is
   * written (still under this instance's epoch), then the shards are freed,
   * with a new epoch, so nothing written here after it counts.
   */
  private async release(shards: readonly number[]): Promise<void> {
    const releasing = new Map<number, OwnedShard>();
    for (const shard of shards) {
      const owned = this.owned.get(shard);
      if (owned) releasing.set(shard, owned);
    }
    if (releasing.size === 0) return;
    for (const owned of releasing.values()) owned.releasing = true;
    this.o.drop([...releasing.keys()]);
    try {
      await this.o.flush();
      await this.pool.query(
        `WITH mine AS (
           SELECT s.shard FROM ${this.s}.shards s
           JOIN unnest($2::int[], $3::bigint[]) AS f(shard, epoch) ON s.shard = f.shard AND s.epoch = f.epoch
           WHERE s.owner = $1
           ORDER BY s.shard
           FOR UPDATE OF s
         )
         UPDATE ${this.s}.shards s SET owner = NULL, epoch = s.epoch + 1, lease_until = '-infinity'
         FROM mine WHERE s.shard = mine.shard`,
        [this.o.instanceId, [...releasing.keys()], [...releasing.values()].map((o) => o.epoch)],
      );
    } finally {
      // Handed over or not, this instance no longer acts on them (if the
      // update failed, their leases run out and someone takes them). One
      // lost meanwhile (and perhaps taken again) is not touched.
      for (const [shard, owned] of releasing) if (this.owned.get(shard) === owned) this.owned.delete(shard);
      this.o.observer?.released(releasing.size);
      this.o.observer?.shardsOwned(this.owned.size);
    }
  }
}
