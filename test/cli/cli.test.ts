// `commitd` the command line, run as a child process (node bin/commitd.js)
// against a real commitd started by `commitd serve`, with real participant
// servers: every command, in tables and as JSON, the list's filters and
// pages, the operator's actions on a stuck, an undecided and a heuristic
// transaction, and the exit codes that need a service (test/cli/usage.test.ts
// has the others).

import t from 'tap';
import { CommitdClient, type Transaction, type TransactionHistory } from '../../src/client/index.js';
import { BIN, runCli } from '../support/cli.js';
import { tempDir } from '../support/harness.js';
import { startParticipant, type TestParticipant, waitUntil } from '../support/participant.js';
import { FAST_SETTINGS, spawnService } from '../support/service.js';

const ADMIN = 'admin-token-0123456789abcdef';
const CLIENT = 'client-token-0123456789abcdef';
const NO_SUCH_ID = `tx_${'0'.repeat(26)}`;

const service = spawnService({
  dataDir: tempDir(),
  script: BIN,
  args: ['serve'],
  inheritCommitdEnv: false,
  env: {
    ...FAST_SETTINGS,
    COMMITD_TOKENS: `admin:${ADMIN},client:${CLIENT}`,
    // A failed phase-two delivery makes its participant stuck at once, and
    // the service's own next attempt is a minute or more away: what finishes
    // the stuck transaction below is the operator's retry.
    COMMITD_STUCK_AFTER_ATTEMPTS: '1',
    COMMITD_RETRY_DELAY_MS_MIN: '120000',
    COMMITD_RETRY_DELAY_MS_MAX: '120000',
  },
});
const url = await service.ready;
t.teardown(() => {
  if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
});
const client = new CommitdClient({ url, token: CLIENT, retries: 0 });
t.teardown(() => client.close());

/** `commitd ARGS` against the service above, as the admin unless `env` says otherwise. */
const cli = (args: readonly string[], env: Readonly<Record<string, string>> = {}) =>
  runCli(args, { COMMITD_URL: url, COMMITD_TOKEN: ADMIN, ...env });

async function json<T>(args: readonly string[]): Promise<T> {
  const ran = await cli([...args, '--json']);
  if (ran.code !== 0) throw new Error(`commitd ${args.join(' ')} exited ${ran.code}: ${ran.stderr}`);
  return JSON.parse(ran.stdout) as T;
}

let names = 0;
/** A participant name no other test uses, so --participant picks this test's transactions only. */
const unique = (what: string) => `${what}-${++names}-${process.pid}`;

async function participant(behavior: Parameters<typeof startParticipant>[0] = null): Promise<TestParticipant> {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

const yes = await participant();

t.test('list: a table for people, --json for scripts, newest first', async (t) => {
  const name = unique('listed');
  const first = await client.run({ participants: [{ name, url: yes.url }] });
  const second = await client.begin({ participants: [{ name, url: yes.url }] });

  const page = await json<{ transactions: Transaction[]; next: string | null }>(['list', '--participant', name]);
  t.same(
    page.transactions.map((x) => x.id),
    [second.id, first.id],
  );
  t.equal(page.next, null);

  const table = await cli(['list', '--participant', name]);
  t.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.match(lines[0], /^ID +STATE +OUTCOME +AGE +PARTICIPANTS +ATTENTION$/);
  t.match(lines[1], new RegExp(`^${second.id} +active +- +\\S+( \\S+)? +1 +-$`));
  t.match(lines[2], new RegExp(`^${first.id} +committed +commit +`));
  t.equal(lines.length, 3);
  t.equal(lines[1]?.indexOf('active'), lines[0]?.indexOf('STATE'), 'columns aligned under their header');

  const none = await cli(['list', '--participant', unique('nobody')]);
  t.same(none, { code: 0, stdout: 'no transactions\n', stderr: '' });
});

t.test('list: every filter, --limit and --after', async (t) => {
  const name = unique('filtered');
  const committed = await client.run({ participants: [{ name, url: yes.url }] });
  const active = await client.begin({ participants: [{ name, url: yes.url }] });
  const ids = async (...args: string[]) =>
    (await json<{ transactions: Transaction[] }>(['list', '--participant', name, ...args])).transactions.map(
      (x) => x.id,
    );

  t.same(await ids('--state', 'committed'), [committed.id]);
  t.same(await ids('--state', 'active'), [active.id]);
  t.same(await ids('--state', 'aborted'), []);
  t.same(await ids('--older-than', '1h'), [], 'nothing here is an hour old');
  await new Promise((r) => setTimeout(r, 50));
  t.same(await ids('--older-than', '10ms'), [active.id, committed.id], 'both are older than 10 ms by now');
  t.same(await ids('--stuck'), []);
  t.same(await ids('--heuristic-unresolved'), []);

  const one = await cli(['list', '--participant', name, '--limit', '1']);
  t.equal(one.code, 0);
  t.match(one.stdout, `\nmore: the same command with --after ${active.id}\n`);
  const firstPage = await json<{ transactions: Transaction[]; next: string | null }>([
    'list',
    '--participant',
    name,
    '--limit',
    '1',
  ]);
  t.same(
    firstPage.transactions.map((x) => x.id),
    [active.id],
  );
  t.equal(firstPage.next, active.id);
  t.same(await ids('--limit', '1', '--after', active.id), [committed.id]);
});

t.test('show: a transaction and its participants', async (t) => {
  const tx = await client.run({ participants: [{ name: 'shown', url: yes.url }], metadata: { order: 42 } });
  const shown = await json<Transaction>(['show', tx.id]);
  t.same(shown, await client.get(tx.id), 'the JSON is the API answer');
  const table = await cli(['show', tx.id]);
  t.equal(table.code, 0, table.stderr);
  t.match(table.stdout, new RegExp(`^id +${tx.id}\nstate +committed\noutcome +commit\nabort reason +-\n`));
  t.match(table.stdout, /\nmetadata +\{"order":42\}\n/);
  t.match(table.stdout, /\nPARTICIPANT +TARGET +VOTE +ACKED +ATTEMPTS +HEURISTIC +LAST ERROR \/ REASON\n/);
  t.match(table.stdout, new RegExp(`\\nshown +${yes.url.replace(/[/.]/g, '\\$&')} +yes +yes +0 +- +-\\n`));
});

t.test('history: what happened, oldest first', async (t) => {
  const tx = await client.run({ participants: [{ name: 'told', url: yes.url }] });
  const history = await json<TransactionHistory>(['history', tx.id]);
  t.equal(history.transactionId, tx.id);
  t.equal(history.truncated, false);
  const types = history.entries.map((e) => e.type);
  for (const type of ['begun', 'sent', 'voted', 'decided', 'acknowledged', 'finished'])
    t.ok(types.includes(type as never), type);
  t.ok(types.indexOf('begun') < types.indexOf('decided'), 'oldest first');
  const table = await cli(['history', tx.id]);
  t.equal(table.code, 0, table.stderr);
  t.match(table.stdout, /^AT +EVENT +PARTICIPANT +DETAILS\n/);
  t.match(table.stdout, /\n\S+ +voted +told +vote=yes latencyMs=\d+/);
  t.match(table.stdout, /\n\S+ +decided +- +outcome=commit reason=all-voted-yes/);
});

t.test('retry: a stuck transaction is finished by the operator once its participant is fixed', async (t) => {
  let failing = true;
  const name = unique('flaky');
  const flaky = await participant((m) =>
    m.action === 'commit' && failing ? { status: 500, body: { error: 'disk full' } } : undefined,
  );
  const tx = await client.run({ participants: [{ name, url: flaky.url }] });
  t.equal(tx.state, 'committing', 'decided, not acknowledged');
  await waitUntil(() => flaky.count('commit', tx.id) >= 1, 10_000, 'the first delivery');
  const stuckIds = async () =>
    (await json<{ transactions: Transaction[] }>(['list', '--stuck', '--participant', name])).transactions.map(
      (x) => x.id,
    );
  let stuck: string[] = [];
  for (let i = 0; i < 100 && stuck.length === 0; i++) {
    stuck = await stuckIds();
    if (stuck.length === 0) await new Promise((r) => setTimeout(r, 50));
  }
  t.same(stuck, [tx.id], 'listed as stuck');
  const listed = await cli(['list', '--stuck', '--participant', name]);
  t.match(listed.stdout, new RegExp(`${tx.id} +committing +commit +.+ +1 \\(1 unacked\\) +${name} 1 attempts`));
  const shown = await cli(['show', tx.id]);
  t.match(shown.stdout, new RegExp(`\\n${name} +\\S+ +yes +no +1 +- +.*500`), 'the last error is shown');

  failing = false;
  const retried = await cli(['retry', tx.id]);
  t.equal(retried.code, 0, retried.stderr);
  let state = '';
  for (let i = 0; i < 200 && state !== 'committed'; i++) {
    state = (await json<Transaction>(['show', tx.id])).state;
    if (state !== 'committed') await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(state, 'committed', 'the retry delivered the commit');
  t.equal(flaky.count('commit', tx.id), 2, 'one failed delivery, one by the retry');
  t.same(await stuckIds(), [], 'no longer stuck');
  const history = await json<TransactionHistory>(['history', tx.id]);
  t.ok(
    history.entries.some((e) => e.type === 'operator-retry'),
    'the retry is in the history',
  );

  const again = await cli(['retry', tx.id]);
  t.equal(again.code, 0, 'nothing owed: still a success');
  t.match(again.stdout, /^nothing owed\n/);
});

t.test('retry before a decision is refused (exit 4)', async (t) => {
  const tx = await client.begin({ participants: [{ name: 'early', url: yes.url }] });
  const ran = await cli(['retry', tx.id]);
  t.equal(ran.code, 4);
  t.match(ran.stderr, /HTTP 409/);
  await client.abort(tx.id);
});

t.test('abort: an undecided transaction; after a commit decision, refused (exit 4)', async (t) => {
  const tx = await client.begin({ participants: [{ name: 'undecided', url: yes.url }] });
  const aborted = await cli(['abort', tx.id]);
  t.equal(aborted.code, 0, aborted.stderr);
  t.match(aborted.stdout, new RegExp(`^aborted\\n\\nid +${tx.id}\\nstate +(aborting|aborted)\\noutcome +abort\\n`));
  const view = await client.get(tx.id);
  t.equal(view.outcome, 'abort');
  t.equal(view.abortReason, 'operator', "an admin's abort is the operator's");

  const committed = await client.run({ participants: [{ name: 'done', url: yes.url }] });
  const refused = await cli(['abort', committed.id]);
  t.equal(refused.code, 4);
  t.match(refused.stderr, /^commitd: The transaction has a commit decision \(HTTP 409\): /);
  const asJson = await cli(['abort', committed.id, '--json']);
  t.equal(asJson.code, 4);
  t.equal(asJson.stdout, '');
  t.match(JSON.parse(asJson.stderr), { type: 'urn:commitd:problem:transaction-committed', status: 409 });
});

t.test('resolve: a heuristic outcome marked resolved with a note', async (t) => {
  const name = unique('rogue');
  const rogue = await participant((m, p) => {
    if (m.action !== 'commit') return undefined;
    p.states.set(m.txId, 'aborted');
    return { status: 409, body: { heuristic: 'abort' } };
  });
  const tx = await client.run({
    participants: [
      { name, url: rogue.url },
      { name: 'fine', url: yes.url },
    ],
  });
  t.equal(tx.mixedOutcome, true);
  const unresolved = async () =>
    (
      await json<{ transactions: Transaction[] }>(['list', '--heuristic-unresolved', '--participant', name])
    ).transactions.map((x) => x.id);
  t.same(await unresolved(), [tx.id]);
  const listed = await cli(['list', '--heuristic-unresolved', '--participant', name]);
  t.match(listed.stdout, new RegExp(`mixed outcome; ${name} abort \\(unresolved\\)`));
  const stats = await json<{ unresolvedHeuristics: number }>(['stats']);
  t.ok(stats.unresolvedHeuristics >= 1, 'counted in the stats');

  const wrongName = await cli(['resolve', tx.id, '--note', 'x', '--participant', 'fine']);
  t.equal(wrongName.code, 4, 'that participant has no heuristic to resolve');
  const note = 'refunded by hand, ticket OPS-7 \u001b[31m';
  const resolved = await cli(['resolve', tx.id, '--note', note, '--participant', name]);
  t.equal(resolved.code, 0, resolved.stderr);
  t.match(resolved.stdout, /^resolved\n/);
  t.match(resolved.stdout, new RegExp(`\\n${name} +\\S+ +yes +yes +0 +abort \\(resolved\\)`));
  t.match(
    resolved.stdout,
    /\nresolved heuristics:\n {2}\S+: \S+ by .+: "refunded by hand, ticket OPS-7 \\u001b\[31m"\n?$/,
  );
  t.notMatch(resolved.stdout, '\u001b', 'no escape sequence from a note reaches the terminal');
  const view = await client.get(tx.id);
  t.match(view.participants.find((p) => p.name === name)?.heuristicResolved, { note });
  t.same(await unresolved(), [], 'no longer unresolved');

  const again = await cli(['resolve', tx.id, '--note', 'again']);
  t.equal(again.code, 4, 'nothing left to resolve');
  t.match(again.stderr, /HTTP 409/);
  const tooLong = await cli(['resolve', tx.id, '--note', 'x'.repeat(1001)]);
  t.equal(tooLong.code, 2, 'a note over 1000 characters: commitd answers 400');
});

t.test('stats: the overview', async (t) => {
  const holder = await client.begin({ participants: [{ name: 'waiting', url: yes.url }] });
  const stats = await json<Record<string, unknown>>(['stats']);
  t.match(stats, {
    inFlight: { active: Number, preparing: Number, prepared: Number, committing: Number, aborting: Number },
    decidedPerSecond: { commit: Number, abort: Number },
    stuckParticipants: Number,
    unresolvedHeuristics: Number,
    oldestUnfinished: { id: String, createdAt: String, ageMs: Number, state: String },
    stuckAfterAttempts: 1,
  });
  t.ok((stats.inFlight as { active: number }).active >= 1);
  const table = await cli(['stats']);
  t.equal(table.code, 0, table.stderr);
  t.match(table.stdout, /^in flight +active \d+, preparing \d+, prepared \d+, committing \d+, aborting \d+\n/);
  t.match(table.stdout, /\ndecided per second +commit [\d.]+, abort [\d.]+ \(last 10 s\)\n/);
  t.match(table.stdout, /\nstuck participants +\d+ \(unacknowledged after 1 attempts\)\n/);
  t.match(table.stdout, /\nunresolved heuristics +\d+\n/);
  t.match(table.stdout, /\noldest unfinished +tx_\S+ \w+, \S+( \S+)? old\n$/);
  await client.abort(holder.id);
});

t.test('exit 3: no such transaction, for every command that takes one; exit 2: an id commitd refuses', async (t) => {
  for (const args of [
    ['show', NO_SUCH_ID],
    ['history', NO_SUCH_ID],
    ['retry', NO_SUCH_ID],
    ['abort', NO_SUCH_ID],
    ['resolve', NO_SUCH_ID, '--note', 'x'],
  ]) {
    const ran = await cli(args);
    t.equal(ran.code, 3, args.join(' '));
    t.match(ran.stderr, /HTTP 404/, args.join(' '));
  }
  const badId = await cli(['show', 'not an id']);
  t.equal(badId.code, 2, 'commitd answers 400: a usage error');
  t.match(badId.stderr, /HTTP 400/);
});

t.test('exit 5: no token, an unknown one, a token that is not an admin', async (t) => {
  const none = await cli(['list'], { COMMITD_TOKEN: '' });
  t.equal(none.code, 5);
  t.match(none.stderr, /HTTP 401/);
  const wrong = await cli(['stats', '--token', 'not-a-token-of-this-commitd']);
  t.equal(wrong.code, 5, '--token wins over COMMITD_TOKEN');
  t.match(wrong.stderr, /HTTP 401/);
  const notAdmin = await cli(['list'], { COMMITD_TOKEN: CLIENT });
  t.equal(notAdmin.code, 5);
  t.match(notAdmin.stderr, /HTTP 403/);
});

t.test('serve: SIGTERM stops the service cleanly (exit 0)', async (t) => {
  service.child.kill('SIGTERM');
  t.same(await service.exited, { code: 0, signal: null });
});
