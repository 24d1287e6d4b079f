// The kit's decisions, message by record state: every cell of the table.

import t from 'tap';
import { decide } from '../../src/kit/protocol.js';
import type { RecordState, TxRecord, Vote } from '../../src/kit/store.js';

function record(state: RecordState, vote: Vote | null, reason: string | null = null): TxRecord {
  return { transactionId: 'tx_1', participant: 'p', state, vote, reason, preparedAtMs: null, updatedAtMs: 0 };
}

t.test('prepare', async (t) => {
  t.same(decide('prepare', null), { kind: 'run', next: 'prepared' }, 'first prepare runs the service');
  t.same(decide('prepare', record('prepared', 'yes')), { kind: 'answer', status: 200, body: { vote: 'yes' } });
  t.same(decide('prepare', record('committed', 'yes')), { kind: 'answer', status: 200, body: { vote: 'yes' } });
  t.same(decide('prepare', record('read-only', 'read-only')), {
    kind: 'answer',
    status: 200,
    body: { vote: 'read-only' },
  });
  t.same(decide('prepare', record('aborted', 'no', 'out of stock')), {
    kind: 'answer',
    status: 200,
    body: { vote: 'no', reason: 'out of stock' },
  });
  const late = decide('prepare', record('aborted', null));
  t.equal(late.kind === 'answer' && late.body.vote, 'no', 'a prepare after an abort (tombstone) votes no');
  const afterYes = decide('prepare', record('aborted', 'yes'));
  t.equal(afterYes.kind === 'answer' && afterYes.body.vote, 'no', 'a prepare after a prepared abort votes no');
});

t.test('commit', async (t) => {
  t.same(decide('commit', record('prepared', 'yes')), { kind: 'run', next: 'committed' });
  t.match(decide('commit', null), { kind: 'answer', status: 404 }, 'never a commit without a yes');
  t.same(decide('commit', record('committed', 'yes')), { kind: 'answer', status: 200, body: {} });
  t.same(decide('commit', record('read-only', 'read-only')), { kind: 'answer', status: 200, body: {} });
  t.same(decide('commit', record('aborted', null)), { kind: 'answer', status: 409, body: { heuristic: 'abort' } });
  t.same(decide('commit', record('aborted', 'no')), { kind: 'answer', status: 409, body: { heuristic: 'abort' } });
});

t.test('abort', async (t) => {
  t.same(decide('abort', null), { kind: 'tombstone' }, 'abort before prepare leaves a tombstone');
  t.same(decide('abort', record('prepared', 'yes')), { kind: 'run', next: 'aborted' });
  t.same(decide('abort', record('aborted', 'no')), { kind: 'answer', status: 200, body: {} });
  t.same(decide('abort', record('aborted', null)), { kind: 'answer', status: 200, body: {} });
  t.same(decide('abort', record('read-only', 'read-only')), { kind: 'answer', status: 200, body: {} });
  t.same(decide('abort', record('committed', 'yes')), { kind: 'answer', status: 409, body: { heuristic: 'commit' } });
});
