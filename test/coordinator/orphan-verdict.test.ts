// The orphan scan rolls back a prepared database transaction only when the
// coordinator says nobody voted on it (src/coordinator/orphan-verdict.ts).
// Each answer the coordinator can give, including the failures: a log that
// cannot be read for a moment, or a transaction another instance drives,
// must never turn into a rollback.

import t from 'tap';
import { ElsewhereError, logUnreadable, NotFoundError, UnavailableError } from '../../src/coordinator/errors.js';
import { orphanVerdict } from '../../src/coordinator/orphan-verdict.js';
import type { Transaction } from '../../src/protocol/types.js';

type Outcome = 'pending' | 'commit' | 'abort';
type Knows = { outcome: () => Promise<Outcome>; get: () => Promise<Transaction> };

const ID = 'tx_orphan';

function committing(participants: Array<{ name: string; database: string | null; acknowledged: boolean }>) {
  return {
    id: ID,
    state: 'committing',
    outcome: 'commit',
    participants: participants.map((p) => ({ ...p, url: `db://${p.database}`, attempts: 1 })),
  } as unknown as Transaction;
}

const coordinator = (knows: Knows) => knows as unknown as Parameters<typeof orphanVerdict>[0];
const fails = (error: Error) => async (): Promise<never> => {
  throw error;
};
const unreadable = () => logUnreadable(new Error('connection refused'));

t.test('undecided, here or at another instance: left for the owner', async (t) => {
  const get = fails(new Error('not asked'));
  t.equal(await orphanVerdict(coordinator({ outcome: async () => 'pending', get }), ID, 'orders', 'shop'), 'leave');
  t.equal(
    await orphanVerdict(
      coordinator({ outcome: fails(new ElsewhereError(ID, 'http://peer:7400')), get }),
      ID,
      'orders',
      'shop',
    ),
    'leave',
  );
});

t.test('a log that cannot be read is never a reason to roll back', async (t) => {
  await t.rejects(
    orphanVerdict(coordinator({ outcome: fails(unreadable()), get: fails(unreadable()) }), ID, 'orders', 'shop'),
    UnavailableError,
    'outcome unreadable: no verdict (the scan skips it this time)',
  );
  await t.rejects(
    orphanVerdict(coordinator({ outcome: async () => 'commit', get: fails(unreadable()) }), ID, 'orders', 'shop'),
    UnavailableError,
    'decided, the transaction unreadable: no verdict',
  );
});

t.test('decided: left while its participant on this database is unacknowledged', async (t) => {
  const outcome = async (): Promise<Outcome> => 'commit';
  const tx = committing([
    { name: 'orders', database: 'shop', acknowledged: false },
    { name: 'ledger', database: 'books', acknowledged: true },
  ]);
  const get = async () => tx;
  t.equal(await orphanVerdict(coordinator({ outcome, get }), ID, 'orders', 'shop'), 'leave', 'being delivered');
  t.equal(await orphanVerdict(coordinator({ outcome, get }), ID, 'ledger', 'books'), 'orphan', 'acknowledged already');
  t.equal(await orphanVerdict(coordinator({ outcome, get }), ID, 'orders', 'other'), 'orphan', 'another database');
  t.equal(await orphanVerdict(coordinator({ outcome, get }), ID, 'stock', 'shop'), 'orphan', 'not a participant');
  t.equal(
    await orphanVerdict(coordinator({ outcome, get }), ID, 'orders', null),
    'leave',
    'an XA server listing cannot tell databases apart: the name is enough',
  );
  t.equal(
    await orphanVerdict(coordinator({ outcome, get: fails(new ElsewhereError(ID, null)) }), ID, 'orders', 'shop'),
    'leave',
    'driven by another instance',
  );
});

t.test('unknown: presumed abort, an orphan', async (t) => {
  t.equal(
    await orphanVerdict(
      coordinator({ outcome: async () => 'abort', get: fails(new NotFoundError(ID)) }),
      ID,
      'orders',
      'shop',
    ),
    'orphan',
  );
});

t.test(
  "unknown under a name without a deployment (an older build's): left, it may be another deployment's",
  async (t) => {
    const unknown = coordinator({ outcome: async () => 'abort', get: fails(new NotFoundError(ID)) });
    t.equal(await orphanVerdict(unknown, ID, 'orders', 'shop', false), 'leave');
    t.equal(await orphanVerdict(unknown, ID, 'orders', null, false), 'leave', 'on an XA server too');
    // Known to this log: the name is this deployment's, whatever its form.
    const aborted = coordinator({
      outcome: async () => 'abort',
      get: async () => ({ participants: [{ name: 'orders', database: 'shop', acknowledged: true }] }) as never,
    });
    t.equal(await orphanVerdict(aborted, ID, 'orders', 'shop', false), 'orphan', 'its own aborted transaction');
  },
);
