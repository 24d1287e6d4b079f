// Targeted probes of what commitd promises, each reproducing a way it was
// once broken (issue 14), against the real service as a process:
// - a 202 means the commit decision is on disk, never "still preparing";
// - a wall clock stepped back across a restart cannot revive a transaction
//   whose deadline abort a participant already heard;
// - after a crash with prepares out, prepared participants are released
//   within seconds, not held until the transaction's deadline.

import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';
import { type Service, startService } from '../support/service.js';

/** Lazy records wait up to a second for a flush, so a kill lands inside that window every time. */
const LAZY_WINDOW = { COMMITD_LAZY_FLUSH_DELAY_MS: '1000' };

async function participants(t: Test, n: number): Promise<TestParticipant[]> {
  const list = await Promise.all(Array.from({ length: n }, () => startParticipant()));
  t.teardown(() => Promise.all(list.map((p) => p.close())));
  return list;
}

async function service(t: Test, dataDir: string, env: Record<string, string> = {}): Promise<Service> {
  const s = await startService(dataDir, env);
  t.teardown(() => s.kill('SIGKILL'));
  return s;
}

t.test('a 202 is only ever given for a commit decision on disk, however slow the participants', async (t) => {
  // The minimal reproduction: every call answered after 800 ms with a
  // no; one connection to the participant; timeouts of 1 s. Six one-shot
  // commits at once queue behind each other for the connection: before the
  // fix three of them were answered 202 with outcome null, then aborted.
  const [slow] = await participants(t, 1);
  (slow as TestParticipant).behavior = (m) =>
    m.action === 'prepare' ? { status: 200, body: { vote: 'no' }, delayMs: 800 } : { status: 200, delayMs: 800 };
  const s = await service(t, tempDir(), {
    COMMITD_CONNECTIONS_PER_ORIGIN: '1',
    COMMITD_PREPARE_TIMEOUT_MS: '1000',
    COMMITD_PHASE_TWO_TIMEOUT_MS: '1000',
  });
  const answers = await Promise.all(
    Array.from({ length: 6 }, () =>
      call(s.url, 'POST', '/v1/transactions', {
        participants: [{ name: 'slow', url: (slow as TestParticipant).url }],
        commit: true,
      }),
    ),
  );
  for (const a of answers) {
    const tx = a.status < 300 ? a.body : a.body.transaction;
    t.ok([409, 503].includes(a.status), `a participant voting no can only abort or be pending, got ${a.status}`);
    if (a.status === 503) {
      t.equal(a.body.type, 'urn:commitd:problem:outcome-pending');
      t.equal(a.headers['retry-after'], '1', 'a pending answer says when to ask again');
    }
    t.not(tx.outcome, 'commit');
  }
  // Nothing that was answered may end committed: every one ends aborted.
  for (const a of answers) {
    const id = (a.status < 300 ? a.body : a.body.transaction).id as string;
    let state = '';
    for (let i = 0; i < 300 && state !== 'aborted'; i++) {
      state = (await call(s.url, 'GET', `/v1/transactions/${id}`)).body.state;
      if (state !== 'aborted') await new Promise((r) => setTimeout(r, 50));
    }
    t.equal(state, 'aborted', `${id} ended aborted`);
  }
});

t.test('a clock stepped back across a restart does not turn a heard deadline abort into a commit', async (t) => {
  const [a, b] = (await participants(t, 2)) as [TestParticipant, TestParticipant];
  const dataDir = tempDir();
  let s = await service(t, dataDir, LAZY_WINDOW);
  const begun = await call(s.url, 'POST', '/v1/transactions', {
    participants: [
      { name: 'a', url: a.url },
      { name: 'b', url: b.url },
    ],
    timeoutMs: 1500,
  });
  t.equal(begun.status, 201);
  const id = begun.body.id as string;
  t.equal((await call(s.url, 'POST', `/v1/transactions/${id}/prepare`)).status, 200, 'prepared');
  // The deadline passes; commitd aborts. The moment b hears its abort,
  // commitd is killed: a's abort went out in the same step.
  const killed = s;
  b.behavior = (m) => {
    if (m.action === 'abort') killed.child.kill('SIGKILL');
    return undefined;
  };
  await b.waitFor(() => b.count('abort', id) > 0, 10_000);
  await a.waitFor(() => a.states.get(id) === 'aborted', 10_000);
  await killed.kill('SIGKILL');
  b.behavior = null;

  // Restart with the wall clock a minute behind (as at a boot before NTP sync): the deadline lies in the future again.
  const shim = path.join(dataDir, 'clock-back.mjs');
  fs.writeFileSync(shim, 'const real = Date.now; Date.now = () => real() - 60_000;\n');
  s = await service(t, dataDir, { ...LAZY_WINDOW, NODE_OPTIONS: `--import=${shim}` });
  const read = await call(s.url, 'GET', `/v1/transactions/${id}`);
  t.equal(read.body.outcome, 'abort', `after the restart it is still aborted (state ${read.body.state})`);
  const commit = await call(s.url, 'POST', `/v1/transactions/${id}/commit`);
  t.equal(commit.status, 409, 'a commit is refused');
  t.not(a.states.get(id), 'committed');
  t.equal(a.count('commit', id), 0, 'no participant ever hears commit');
});

t.test('after a crash with prepares out, prepared participants are released within seconds', async (t) => {
  const [p] = (await participants(t, 1)) as [TestParticipant];
  const dataDir = tempDir();
  const s = await service(t, dataDir, LAZY_WINDOW);
  const begun = await call(s.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'p', url: p.url }],
    // An hour: waiting for the deadline would hold p's locks that long.
    timeoutMs: 3_600_000,
  });
  const id = begun.body.id as string;
  // p prepares, then commitd dies before p's vote reaches it.
  p.behavior = (m, participant) => {
    if (m.action !== 'prepare') return undefined;
    participant.states.set(m.txId, 'prepared');
    s.child.kill('SIGKILL');
    return 'hang';
  };
  void call(s.url, 'POST', `/v1/transactions/${id}/prepare`).catch(() => {});
  await waitUntil(() => p.states.get(id) === 'prepared', 10_000, 'p to prepare');
  await s.kill('SIGKILL');
  p.behavior = null;

  const restarted = await service(t, dataDir);
  await waitUntil(() => p.states.get(id) === 'aborted', 10_000, 'p to hear the abort');
  const read = await call(restarted.url, 'GET', `/v1/transactions/${id}`);
  t.equal(read.body.outcome, 'abort');
  t.equal(read.body.abortReason, 'recovery');
});
