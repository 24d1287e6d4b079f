// A call is answered within the answer bound even when its step waits on a
// store that does not finish a write: the caller hears what readers see (an
// undecided transaction: a 503, retry), and the step goes on when the store
// comes back. Before, the bound counted only from when the step was taken,
// and a call behind a stuck forced write waited as long as the store did.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SqliteLog } from '../../src/log/sqlite-log.js';
import { commitAnswer } from '../../src/protocol/answers.js';
import { beginRequest, testCoordinator } from '../support/coordinator.js';

const ANSWER_WAIT_MS = 300;
/** Far past the bound: a call still unanswered then was not bounded at all. */
const GIVE_UP_MS = 5_000;

t.test('a commit whose forced write the store holds is answered at the bound, and goes on after', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-bound-'));
  let holding = false;
  const held: Array<() => void> = [];
  const log = new SqliteLog({
    dataDir: dir,
    batchRecordsMax: 100,
    lazyFlushDelayMs: 5,
    syncHooks: {
      inlineMaxWaiters: 0,
      fdatasync: (fd, callback) => {
        if (holding) held.push(() => fs.fdatasync(fd, callback));
        else fs.fdatasync(fd, callback);
      },
    },
  });
  const coordinator = testCoordinator(
    log,
    {
      prepare: async () => ({ kind: 'vote', vote: 'yes', reason: null }),
      deliver: async () => ({ kind: 'acknowledged' }),
      close: async () => {},
    },
    { answerWaitMsMax: ANSWER_WAIT_MS },
  );
  t.teardown(async () => {
    holding = false;
    for (const release of held.splice(0)) release();
    await coordinator.stop();
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await coordinator.recover();
  const id = (await coordinator.begin(beginRequest(false))).tx.id;

  // The store stops finishing writes: the commit's first step (its forced
  // `preparing`) waits, and a second commit queues behind it.
  holding = true;
  const first = coordinator.commit(id);
  const second = coordinator.commit(id);
  let giveUpTimer: NodeJS.Timeout | undefined;
  // A timer of the test's own keeps the process alive (the coordinator's do not).
  const giveUp = new Promise<'unanswered'>((resolve) => {
    giveUpTimer = setTimeout(() => resolve('unanswered'), GIVE_UP_MS);
  });
  const [a, b] = await Promise.all([Promise.race([first, giveUp]), Promise.race([second, giveUp])]);
  clearTimeout(giveUpTimer);
  t.not(a, 'unanswered', 'the waiting commit is answered');
  t.not(b, 'unanswered', 'the one queued behind it too');
  t.ok(held.length > 0, 'while the store still holds the write');
  if (a !== 'unanswered')
    t.equal(commitAnswer(a.tx, a.refusal !== null), 'undecided', 'told what readers see: undecided');

  // The store comes back: the step goes on and the transaction commits.
  holding = false;
  for (const release of held.splice(0)) release();
  const again = await coordinator.commit(id);
  t.equal(again.tx.outcome, 'commit', 'the commit went on');
});
