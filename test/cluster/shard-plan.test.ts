// The pure rules of the cluster (shard-plan.ts), from frozen inputs: which
// shards an instance takes and hands over, and which peers count as gone.

import t from 'tap';
import { deadPeers, type InstanceRow, planShards, type ShardRow } from '../../src/cluster/shard-plan.js';

const SHARDS = 32;

/** Shard rows: `owners[i]` owns shard i (null: free), epoch 7 each, leases current unless listed. */
function rows(owners: ReadonlyArray<string | null>, expired: readonly number[] = []): ShardRow[] {
  return owners.map((owner, shard) => ({ shard, owner, epoch: 7, expired: expired.includes(shard) }));
}

const instance = (id: string, live = true, quietMs = 100): InstanceRow => ({ id, url: `http://${id}`, live, quietMs });
const owned = (all: ReadonlyArray<string | null>, id: string) =>
  new Set(all.flatMap((owner, shard) => (owner === id ? [shard] : [])));

t.test('alone on a fresh store: every free shard, each under the epoch seen', async (t) => {
  const shards = rows(Array(SHARDS).fill(null));
  const plan = planShards({ self: 'a', shards, instances: [instance('a')], dead: new Set(), owned: new Set() });
  t.equal(plan.target, SHARDS);
  t.equal(plan.take.length, SHARDS);
  t.ok(plan.take.every((x) => x.reason === 'free' && x.seenEpoch === 7));
  t.same(plan.release, []);
});

t.test(
  'a newcomer: the holder hands over what is beyond its share, the newcomer takes free ones up to its own',
  async (t) => {
    const all = Array<string | null>(SHARDS).fill('a');
    const instances = [instance('a'), instance('b')];
    const holder = planShards({ self: 'a', shards: rows(all), instances, dead: new Set(), owned: owned(all, 'a') });
    t.equal(holder.target, 16);
    t.same(holder.release, [31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16], 'the highest 16');
    t.same(holder.take, []);

    const halfFree = all.map((owner, shard) => (shard >= 16 ? null : owner));
    const newcomer = planShards({ self: 'b', shards: rows(halfFree), instances, dead: new Set(), owned: new Set() });
    t.equal(newcomer.take.length, 16);
    t.ok(newcomer.take.every((x) => x.reason === 'free'));
    const holderAfter = planShards({
      self: 'a',
      shards: rows(halfFree),
      instances,
      dead: new Set(),
      owned: owned(halfFree, 'a'),
    });
    t.same(holderAfter.release, [], 'nothing more to hand over');
    t.same(holderAfter.take, [], 'and the free ones are left to the one short of its share');
  },
);

t.test('balanced within one shard: nothing moves', async (t) => {
  // 11, 11, 10 of 32 among three.
  const all = Array.from({ length: SHARDS }, (_, i) => (i < 11 ? 'a' : i < 22 ? 'b' : 'c'));
  const instances = [instance('a'), instance('b'), instance('c')];
  for (const self of ['a', 'b', 'c']) {
    const plan = planShards({ self, shards: rows(all), instances, dead: new Set(), owned: owned(all, self) });
    t.same([plan.take, plan.release], [[], []], `${self} keeps what it has`);
  }
});

t.test('a dead owner: all its shards are taken at once, whatever the share', async (t) => {
  const all = Array.from({ length: SHARDS }, (_, i) => (i < 16 ? 'a' : 'b'));
  const plan = planShards({
    self: 'a',
    shards: rows(all),
    instances: [instance('a'), instance('b')],
    dead: new Set(['b']),
    owned: owned(all, 'a'),
  });
  t.equal(plan.target, SHARDS, 'alone alive: the share is everything');
  t.equal(plan.take.length, 16);
  t.ok(plan.take.every((x) => x.reason === 'owner-gone' && x.shard >= 16));
});

t.test('a lapsed lease is taken even from an owner that looks alive', async (t) => {
  const all = Array.from({ length: SHARDS }, (_, i) => (i < 16 ? 'a' : 'b'));
  const plan = planShards({
    self: 'a',
    shards: rows(all, [20, 21]),
    instances: [instance('a'), instance('b')],
    dead: new Set(),
    owned: owned(all, 'a'),
  });
  t.same(
    plan.take.map((x) => [x.shard, x.reason]),
    [
      [20, 'lease-expired'],
      [21, 'lease-expired'],
    ],
  );
});

t.test("a shard the store says is this instance's but it let go of is taken again, under a new epoch", async (t) => {
  const all = Array<string | null>(SHARDS).fill('a');
  const mine = owned(all, 'a');
  mine.delete(3);
  const plan = planShards({ self: 'a', shards: rows(all), instances: [instance('a')], dead: new Set(), owned: mine });
  t.same(
    plan.take.map((x) => [x.shard, x.reason, x.seenEpoch]),
    [[3, 'reclaimed', 7]],
  );
});

t.test('instances whose heartbeat ran out, or that a probe found gone, do not count toward the share', async (t) => {
  const all = Array.from({ length: SHARDS }, (_, i) => (i < 16 ? 'a' : null));
  const plan = planShards({
    self: 'a',
    shards: rows(all),
    instances: [instance('a'), instance('b', false), instance('c')],
    dead: new Set(['c']),
    owned: owned(all, 'a'),
  });
  t.equal(plan.target, SHARDS);
  t.equal(plan.take.length, 16, 'the free ones too');
});

t.test('gone: a refused address at once; silence only when the store agrees the heartbeat stopped', async (t) => {
  const instances = [instance('paused', true, 1600), instance('partitioned', true, 200), instance('killed', true, 50)];
  const gone = new Map([
    ['paused', 'silent' as const],
    ['partitioned', 'silent' as const],
    ['killed', 'refused' as const],
  ]);
  t.same([...deadPeers(gone, instances, 1500)].sort(), ['killed', 'paused']);
  t.same([...deadPeers(new Map([['vanished', 'silent' as const]]), [], 1500)], ['vanished'], 'no row left: gone');
});
