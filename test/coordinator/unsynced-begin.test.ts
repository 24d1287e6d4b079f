// A transaction whose begin record is written but not yet fsynced was never
// acknowledged and may not survive a power loss: until its fsync completes it
// does not exist for anyone who reads, lists or calls it, though the log can
// already return its record.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { NotFoundError } from '../../src/coordinator/errors.js';
import { SqliteLog } from '../../src/log/sqlite-log.js';
import type { ParticipantClient } from '../../src/participants/participant-client.js';
import { beginRequest, testCoordinator } from '../support/coordinator.js';

t.test('reads, lists and calls do not see a begin that waits for its fsync', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-unsynced-'));
  const held: Array<() => void> = [];
  const log = new SqliteLog({
    dataDir: dir,
    batchRecordsMax: 100,
    lazyFlushDelayMs: 60_000,
    syncHooks: {
      inlineMaxWaiters: 0,
      fdatasync: (fd, callback) => held.push(() => fs.fdatasync(fd, callback)),
    },
  });
  const participants: ParticipantClient = {
    prepare: async () => ({ kind: 'vote', vote: 'yes', reason: null }),
    deliver: async () => ({ kind: 'acknowledged' }),
    close: async () => {},
  };
  const coordinator = testCoordinator(log, participants);
  t.teardown(async () => {
    await coordinator.stop();
    log.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await coordinator.recover();

  const begun = coordinator.begin(beginRequest(false));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(held.length, 1, 'the begin record is written and its fsync runs');
  const [stored] = (await log.list({ state: null, limit: 10, after: null })).transactions;
  t.ok(stored, 'the log already returns the record');
  const id = stored?.id as string;

  await t.rejects(coordinator.reads.get(id), NotFoundError, 'GET: 404');
  t.same((await coordinator.reads.list({ state: null, limit: 10, after: null })).transactions, [], 'not listed');
  await t.rejects(coordinator.commit(id), NotFoundError, 'commit: 404, not an invariant violation');
  await t.rejects(coordinator.abort(id), NotFoundError, 'abort: 404');
  await t.rejects(coordinator.prepare(id), NotFoundError, 'prepare: 404');
  await t.rejects(
    coordinator.enlist(id, { name: 'stock', url: 'http://stock.test/tx', database: null, payloadJson: null }),
    NotFoundError,
    'enlist: 404',
  );
  t.equal(await coordinator.reads.outcome(id), 'pending', 'a participant asking hears pending, never abort');

  held[0]?.();
  const answer = await begun;
  t.equal(answer.tx.id, id);
  t.equal((await coordinator.reads.get(id)).state, 'active', 'once durable, it is there');
  t.same(
    (await coordinator.reads.list({ state: null, limit: 10, after: null })).transactions.map((tx) => tx.id),
    [id],
  );
});
