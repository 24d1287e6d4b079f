// The restart both trace tests go through: a one-shot commit begun with a
// traceparent, decided while its participant refuses the commit message;
// commitd closes, the participant recovers, commitd opens the same data
// directory again and its recovery delivers the commit.

import type { Test } from 'tap';
import { startHarness } from '../support/harness.js';
import { type Received, startParticipant } from '../support/participant.js';

export interface Restarted {
  readonly txId: string;
  /** The commit messages the second commitd sent, oldest first. */
  readonly resent: readonly Received[];
}

/** `restarting` runs between the two lives (a test clears what it collected of the first). */
export async function commitAcrossRestart(t: Test, traceParent: string, restarting = () => {}): Promise<Restarted> {
  const a = await startParticipant((m) => (m.action === 'commit' ? { status: 503 } : undefined));
  t.teardown(() => a.close());
  const first = await startHarness();
  const res = await first.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    headers: { traceparent: traceParent },
    payload: { participants: [{ name: 'orders', url: a.url }], commit: true },
  });
  t.equal(res.statusCode, 202, 'the commit is decided; the participant has not acknowledged');
  const txId = res.json().id as string;
  await first.close();
  const before = a.count('commit', txId);
  restarting();
  a.behavior = null;
  const second = await startHarness({}, first.dataDir);
  t.teardown(() => second.close(true));
  await a.waitFor(() => a.states.get(txId) === 'committed');
  const resent = a.received.filter((m) => m.action === 'commit' && m.txId === txId).slice(before);
  t.ok(resent.length >= 1, 'recovery sent the commit again');
  return { txId, resent };
}
