import t from 'tap';
import { orphanAction } from '../../../src/participants/databases/orphan-scanner.js';
import { fullTransactionId } from '../../../src/participants/databases/postgres.js';

t.test('what commitd leaves is never touched, however old', async (t) => {
  t.equal(orphanAction('leave', 0, 10_000), 'leave');
  t.equal(orphanAction('leave', Number.MAX_SAFE_INTEGER, 0), 'leave');
});

t.test('an orphan waits out the safety interval, then is rolled back', async (t) => {
  t.equal(orphanAction('orphan', 9_999, 10_000), 'wait');
  t.equal(orphanAction('orphan', 10_000, 10_000), 'rollback');
  t.equal(orphanAction('orphan', 0, 0), 'rollback', 'a zero interval rolls back at once');
});

t.test('a prepared transaction 32-bit xid widens to the 64-bit id pg_xact_status takes', async (t) => {
  t.equal(fullTransactionId('1000', '1005'), '1000', 'epoch 0');
  const epoch3 = 3n << 32n;
  t.equal(fullTransactionId('1000', String(epoch3 + 1005n)), String(epoch3 + 1000n), 'same epoch');
  t.equal(
    fullTransactionId('4294967000', String(epoch3 + 10n)),
    String(epoch3 - (1n << 32n) + 4294967000n),
    'prepared before the epoch turned over',
  );
});
