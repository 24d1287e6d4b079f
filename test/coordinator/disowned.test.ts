// Several instances: a transaction whose shard moves to another instance
// while calls for it wait here (behind a forced write, or for its decision)
// is let go of at once, and every such call hears where to go (the API
// forwards it there) instead of waiting out the answer bound for a step this
// instance will never take.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import type { Coordinator, Placement } from '../../src/coordinator/coordinator.js';
import { ElsewhereError } from '../../src/coordinator/errors.js';
import { SqliteLog } from '../../src/log/sqlite-log.js';
import type { ParticipantClient } from '../../src/participants/participant-client.js';
import { shardOfId } from '../../src/protocol/transaction-ids.js';
import { beginRequest, testCoordinator } from '../support/coordinator.js';

const SHARD = 5;
const PEER = 'http://peer.test:7400';
/** A call that waited it out would be answered (what readers see) rather than refused: the test would fail on that. */
const ANSWER_WAIT_MS = 2_000;

interface Setup {
  coordinator: Coordinator;
  /** The shard moves to PEER: the placement says so, and the coordinator lets go of its transactions. */
  moveAway: () => number;
}

/** An instance owning SHARD, its log's fsyncs and participants as the test gives them. */
async function setup(
  t: Test,
  participants: ParticipantClient,
  fdatasync?: (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void,
): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-disowned-'));
  const log = new SqliteLog({
    dataDir: dir,
    batchRecordsMax: 100,
    lazyFlushDelayMs: 5,
    ...(fdatasync ? { syncHooks: { inlineMaxWaiters: 0, fdatasync } } : {}),
  });
  let owned = true;
  const placement: Placement = {
    shardForNew: () => (owned ? SHARD : null),
    peerForNew: () => (owned ? null : PEER),
    whereIs: () => (owned ? { at: 'here' } : { at: 'peer', url: PEER }),
    confirmOwnership: async () => owned,
  };
  const coordinator = testCoordinator(log, participants, { placement, answerWaitMsMax: ANSWER_WAIT_MS });
  t.teardown(async () => {
    await coordinator.stop();
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await coordinator.recover();
  return {
    coordinator,
    moveAway: () => {
      owned = false;
      return coordinator.drop([SHARD]);
    },
  };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
}

t.test('calls queued or waiting on a transaction whose shard moves away hear where it went', async (t) => {
  let holding = false;
  const held: Array<() => void> = [];
  const { coordinator, moveAway } = await setup(
    t,
    {
      prepare: async () => ({ kind: 'vote', vote: 'yes', reason: null }),
      deliver: async () => ({ kind: 'acknowledged' }),
      close: async () => {},
    },
    (fd, callback) => {
      if (holding) held.push(() => fs.fdatasync(fd, callback));
      else fs.fdatasync(fd, callback);
    },
  );
  const id = (await coordinator.begin(beginRequest(false))).tx.id;
  t.equal(shardOfId(id), SHARD, 'begun in the shard this instance owns');

  // The commit's first step is a forced write; the abort queues behind it.
  holding = true;
  const commit = coordinator.commit(id);
  const abort = coordinator.abort(id);
  const enlist = coordinator.enlist(id, {
    name: 'stock',
    url: 'http://stock.test/tx',
    database: null,
    payloadJson: null,
  });
  const settled = { commit: false, abort: false };
  commit.catch(() => {}).finally(() => (settled.commit = true));
  abort.catch(() => {}).finally(() => (settled.abort = true));
  enlist.catch(() => {});
  await until(() => held.length > 0);
  t.equal(held.length, 1, 'the commit waits for its forced write');
  t.same(settled, { commit: false, abort: false }, 'both calls wait');

  // The shard moves to the peer (taken over, or handed over).
  t.equal(moveAway(), 1, 'the transaction is let go of');
  holding = false;
  for (const release of held.splice(0)) release();

  const commitError = await commit.then(
    () => null,
    (e: unknown) => e,
  );
  const abortError = await abort.then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(commitError instanceof ElsewhereError, 'the waiting commit hears it is elsewhere, not an answer');
  t.ok(abortError instanceof ElsewhereError, 'the queued abort hears it is elsewhere, not an unchanged answer');
  t.equal((commitError as ElsewhereError).url, PEER, 'named: the API forwards the commit there');
  t.equal((abortError as ElsewhereError).url, PEER, 'named: the API forwards the abort there');
  const enlistError = await enlist.then(
    () => null,
    (e: unknown) => e,
  );
  t.equal((enlistError as ElsewhereError).url, PEER, 'a queued enlist goes there too, not answered as if enlisted');
  t.equal(coordinator.inFlight, 0, 'nothing of it is left here');
});

t.test('a one-shot whose commit decision is on disk is answered with it when its shard moves away', async (t) => {
  const delivering: Array<() => void> = [];
  t.teardown(() => {
    for (const release of delivering.splice(0)) release();
  });
  const { coordinator, moveAway } = await setup(t, {
    prepare: async () => ({ kind: 'vote', vote: 'yes', reason: null }),
    // Phase two held: the caller waits for every participant to be tried once.
    deliver: () => new Promise((resolve) => delivering.push(() => resolve({ kind: 'acknowledged' }))),
    close: async () => {},
  });
  const begin = coordinator.begin(beginRequest(true));
  await until(() => delivering.length > 0);
  t.equal(delivering.length, 1, 'decided commit, its message out, the caller waiting for the answer');

  t.equal(moveAway(), 1);
  const answer = await begin.catch((e: unknown) => e);
  t.notOk(answer instanceof ElsewhereError, 'not told to retry a transaction that commits');
  const tx = (answer as { tx: { outcome: string | null; state: string } }).tx;
  t.equal(tx?.outcome, 'commit', 'told the decision (the API answers 202: committing)');
  t.equal(tx?.state, 'committing');
});

t.test(
  'a one-shot whose commit decision is being written when its shard is handed over hears the decision',
  async (t) => {
    // A hand-over writes what is queued before it lets go: the decision in
    // flight reaches the disk, and the new owner drives it as committing. The
    // caller must hear commit, not "retry" (which, without an idempotency key,
    // would do the work twice).
    let holding = false;
    const held: Array<() => void> = [];
    const { coordinator, moveAway } = await setup(
      t,
      {
        prepare: async () => {
          holding = true; // from the vote on, fsyncs wait: the next forced write is the decision
          return { kind: 'vote', vote: 'yes', reason: null };
        },
        deliver: async () => ({ kind: 'acknowledged' }),
        close: async () => {},
      },
      (fd, callback) => {
        if (holding) held.push(() => fs.fdatasync(fd, callback));
        else fs.fdatasync(fd, callback);
      },
    );
    const begin = coordinator.begin(beginRequest(true));
    await until(() => held.length > 0);
    t.equal(held.length, 1, 'the commit decision waits for its fsync, the caller for the decision');

    t.equal(moveAway(), 1, 'handed over with the decision in flight');
    holding = false;
    for (const release of held.splice(0)) release();
    const answer = await begin.catch((e: unknown) => e);
    t.notOk(answer instanceof ElsewhereError, 'not told to retry');
    t.equal(
      (answer as { tx?: { outcome: string | null } }).tx?.outcome,
      'commit',
      'told the decision that reached the disk',
    );
  },
);
