// Transaction ids: the shape the API validates, strictly increasing (the list
// API's paging relies on it), and random where they are not time.

import t from 'tap';
import { ID_SHARDS, IdGenerator, shardOfId, TX_ID_PATTERN } from '../../src/coordinator/ids.js';

t.test('ids match the pattern and increase strictly, within a millisecond and across', async (t) => {
  const ids = new IdGenerator();
  const pattern = new RegExp(TX_ID_PATTERN);
  const made: string[] = [];
  // 2,000 ids over 20 milliseconds: 100 in each, and the random pool is
  // refilled several times on the way (16 bytes per new millisecond).
  for (let i = 0; i < 2_000; i++) made.push(ids.next(1_700_000_000_000 + Math.floor(i / 100)));
  t.same(
    made.filter((id) => !pattern.test(id)),
    [],
    'every id matches the pattern',
  );
  for (let i = 1; i < made.length; i++) {
    if (!((made[i] as string) > (made[i - 1] as string))) t.fail(`${made[i]} does not follow ${made[i - 1]}`);
  }
  t.equal(new Set(made).size, made.length, 'no id twice');
});

t.test('each new millisecond draws fresh randomness', async (t) => {
  const ids = new IdGenerator();
  const randomParts = new Set<string>();
  for (let ms = 0; ms < 1_000; ms++) randomParts.add(ids.next(1_700_000_000_000 + ms).slice(13));
  t.equal(randomParts.size, 1_000, 'no two milliseconds share their random part');
});

t.test('an injected entropy source is used as given', async (t) => {
  const ids = new IdGenerator((n) => Buffer.alloc(n, 0));
  t.equal(ids.next(0), `tx_${'0'.repeat(26)}`);
  t.equal(ids.next(0), `tx_${'0'.repeat(25)}1`, 'the same millisecond increments');
});

t.test('an id names its shard, and ids of one shard still increase strictly', async (t) => {
  const ids = new IdGenerator();
  const pattern = new RegExp(TX_ID_PATTERN);
  const byShard = new Map<number, string[]>();
  for (let i = 0; i < 3_200; i++) {
    const shard = (i * 7) % ID_SHARDS;
    const id = ids.next(1_700_000_000_000 + Math.floor(i / 400), shard);
    if (shardOfId(id) !== shard) t.fail(`${id} should name shard ${shard}, names ${shardOfId(id)}`);
    if (!pattern.test(id)) t.fail(`${id} does not match the pattern`);
    byShard.set(shard, [...(byShard.get(shard) ?? []), id]);
  }
  t.equal(byShard.size, ID_SHARDS, 'every shard was named, each by its own ids, increasing and unique');
  for (const [shard, made] of byShard) {
    for (let i = 1; i < made.length; i++) {
      if (!((made[i] as string) > (made[i - 1] as string))) t.fail(`shard ${shard}: ${made[i]} after ${made[i - 1]}`);
    }
    if (new Set(made).size !== made.length) t.fail(`shard ${shard}: an id twice`);
  }
  t.throws(() => ids.next(0, ID_SHARDS), RangeError, 'a shard past the last is refused');
  t.throws(() => ids.next(0, -1), RangeError);
  t.equal(shardOfId('tx_nope'), null, 'not an id: no shard');
  t.equal(shardOfId(`tx_${'0'.repeat(10)}${'U'.repeat(16)}`), null, 'a letter Crockford leaves out: no shard');
});
