// Transaction ids: the shape the API validates, strictly increasing (the list
// API's paging relies on it), and random where they are not time.

import t from 'tap';
import { IdGenerator, TX_ID_PATTERN } from '../../src/coordinator/ids.js';

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
