// `commitd` the command line, run as a child process (node bin/commitd.js)
// against a real commitd started by `commitd serve`, with real participant
// servers: every command, in tables and as JSON, the list's filters and
// pages, the operator's actions on a stuck, an undecided and a heuristic
// transaction, and the exit codes that need a service (test/cli/usage.test.ts
// has the others).

import t from 'tap';
import { CommitdClient, type TransactionHistory, type TransactionPage } from '../../src/client/index.js';
import { BIN, type Ran, runCli } from '../support/cli.js';
import { tempDir } from '../support/harness.js';
import { startParticipant, type TestParticipant } from '../support/participant.js';
import { FAST_SETTINGS, spawnService } from '../support/service.js';

const ADMIN = 'admin-token-0123456789abcdef';
const CLIENT = 'client-token-0123456789abcdef';
const NO_SUCH_ID = `tx_${'0'.repeat(26)}`;
/** Undecided transactions here must not reach their deadline while a slow machine runs the commands. */
const UNDECIDED_TIMEOUT_MS = 600_000;
// Every command is a node process of its own: on a busy two-core machine each
// takes seconds, and this file runs some forty.
t.setTimeout(600_000);

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
const client = new CommitdClient({ url, token: ADMIN, retries: 0 });
t.teardown(() => client.close());

/** `commitd ARGS` against the service above, as the admin unless `env` says otherwise. */
const cli = (args: readonly string[], env: Readonly<Record<string, string>> = {}) =>
  runCli(args, { COMMITD_URL: url, COMMITD_TOKEN: ADMIN, ...env });

let names = 0;
/** A participant name no other test uses, so --participant picks this test's transactions only. */
const unique = (what: string) => `${what}-${++names}-${process.pid}`;

async function participant(behavior: Parameters<typeof startParticipant>[0] = null): Promise<TestParticipant> {
  const p = await startParticipant(behavior);
  t.teardown(() => p.close());
  return p;
}

const yes = await participant();

t.test('list: a table for people, --json for scripts, newest first, every filter, pages', async (t) => {
  const name = unique('listed');
  const committed = await client.run({ participants: [{ name, url: yes.url }] });
  const active = await client.begin({ participants: [{ name, url: yes.url }], timeoutMs: UNDECIDED_TIMEOUT_MS });
  await new Promise((r) => setTimeout(r, 50));
  const list = (...args: string[]) => cli(['list', '--participant', name, ...args]);
  const ids = (ran: Ran) => (JSON.parse(ran.stdout) as TransactionPage).transactions.map((x) => x.id);
  // Independent of each other: run at once. (--stuck and --heuristic-unresolved are shown below, with a stuck and a heuristic transaction.)
  const [table, asJson, filtered, old, none, firstPage, firstPageJson, secondPage] = await Promise.all([
    list(),
    list('--json'),
    list('--state', 'committed', '--older-than', '10ms', '--json'),
    list('--older-than', '1h', '--json'),
    cli(['list', '--participant', unique('nobody')]),
    list('--limit', '1'),
    list('--limit', '1', '--json'),
    list('--limit', '1', '--after', active.id, '--json'),
  ]);

  t.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.match(lines[0], /^ID +STATE +OUTCOME +AGE +PARTICIPANTS +ATTENTION$/);
  t.match(lines[1], new RegExp(`^${active.id} +active +- +\\S+( \\S+)? +1 +-$`));
  t.match(lines[2], new RegExp(`^${committed.id} +committed +commit +\\S+( \\S+)? +1 +-$`));
  t.equal(lines.length, 3);
  t.equal(lines[1]?.indexOf('active'), lines[0]?.indexOf('STATE'), 'columns aligned under their header');

  t.same(JSON.parse(asJson.stdout), await client.list({ participant: name }), 'the JSON is the API answer');
  t.same(ids(asJson), [active.id, committed.id]);
  t.same(ids(filtered), [committed.id], '--state, --older-than and --participant combine');
  t.same(ids(old), [], 'nothing here is an hour old');
  t.same(none, { code: 0, stdout: 'no transactions\n', stderr: '' });

  t.equal(firstPage.code, 0);
  t.match(
    firstPage.stdout,
    new RegExp(`^ID .*\\n${active.id} .*\\n\\nmore: the same command with --after ${active.id}\\n$`),
  );
  t.match(JSON.parse(firstPageJson.stdout), { next: active.id });
  t.same(ids(firstPageJson), [active.id]);
  t.same(ids(secondPage), [committed.id]);
  await client.abort(active.id);
});

t.test('show and history: a transaction, its participants, what happened to it', async (t) => {
  const tx = await client.run({ participants: [{ name: 'shown', url: yes.url }], metadata: { order: 42 } });
  const [shown, shownJson, history, historyJson] = await Promise.all([
    cli(['show', tx.id]),
    cli(['show', tx.id, '--json']),
    cli(['history', tx.id]),
    cli(['history', tx.id, '--json']),
  ]);
  t.same(JSON.parse(shownJson.stdout), await client.get(tx.id), 'the JSON is the API answer');
  t.equal(shown.code, 0, shown.stderr);
  t.match(shown.stdout, new RegExp(`^id +${tx.id}\nstate +committed\noutcome +commit\nabort reason +-\n`));
  t.match(shown.stdout, /\nmetadata +\{"order":42\}\n/);
  t.match(shown.stdout, /\nPARTICIPANT +TARGET +VOTE +ACKED +ATTEMPTS +HEURISTIC +LAST ERROR \/ REASON\n/);
  t.match(shown.stdout, new RegExp(`\\nshown +${yes.url.replace(/[/.]/g, '\\$&')} +yes +yes +0 +- +-\\n`));

  t.same(JSON.parse(historyJson.stdout), await client.history(tx.id), 'the JSON is the API answer');
  const entries = (JSON.parse(historyJson.stdout) as TransactionHistory).entries;
  t.same(
    entries.map((e) => e.type).filter((type) => type !== 'requested'),
    ['begun', 'voted', 'decided', 'acknowledged', 'finished'],
    'oldest first',
  );
  t.equal(history.code, 0, history.stderr);
  t.match(history.stdout, /^AT +EVENT +PARTICIPANT +DETAILS\n/);
  t.match(history.stdout, /\n\S+ +voted +shown +vote=yes latencyMs=\d+\n/);
  t.match(history.stdout, /\n\S+ +decided +- +outcome=commit reason=all-voted-yes\n/);
  t.match(history.stdout, /\n\S+ +finished +- *\n?/);
});

t.test('retry: a stuck transaction is finished by the operator once its participant is fixed', async (t) => {
  let failing = true;
  const name = unique('flaky');
  const flaky = await participant((m) =>
    m.action === 'commit' && failing ? { status: 500, body: { error: 'disk full' } } : undefined,
  );
  const tx = await client.run({ participants: [{ name, url: flaky.url }] });
  t.equal(tx.state, 'committing', 'decided, not acknowledged');
  const stuckIds = async () => (await client.list({ stuck: true, participant: name })).transactions.map((x) => x.id);
  for (let i = 0; i < 200 && (await stuckIds()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  const [listed, listedJson, shown] = await Promise.all([
    cli(['list', '--stuck', '--participant', name]),
    cli(['list', '--stuck', '--participant', name, '--json']),
    cli(['show', tx.id]),
  ]);
  t.same(
    (JSON.parse(listedJson.stdout) as TransactionPage).transactions.map((x) => x.id),
    [tx.id],
    '--stuck lists it',
  );
  t.match(listed.stdout, new RegExp(`\\n${tx.id} +committing +commit +.+ +1 \\(1 unacked\\) +${name} 1 attempts\\n`));
  t.match(shown.stdout, new RegExp(`\\n${name} +\\S+ +yes +no +1 +- +.*500`), 'the last error is shown');

  failing = false;
  const retried = await cli(['retry', tx.id]);
  t.equal(retried.code, 0, retried.stderr);
  t.match(
    retried.stdout,
    new RegExp(`^(retrying now; not acknowledged yet: ${name}|nothing owed)\\n\\nid +${tx.id}\\n`),
  );
  await flaky.waitFor(() => flaky.states.get(tx.id) === 'committed');
  t.equal(flaky.count('commit', tx.id), 2, 'one failed delivery, then the one the retry sent');
  let state = '';
  for (let i = 0; i < 200 && state !== 'committed'; i++) {
    state = (await client.get(tx.id)).state;
    if (state !== 'committed') await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(state, 'committed');
  t.same(await stuckIds(), [], 'no longer stuck');
  const history = await client.history(tx.id);
  t.match(
    history.entries.find((e) => e.type === 'operator-retry'),
    { by: { role: 'admin' } },
    'the retry is in the history',
  );

  const [again, early] = await Promise.all([
    cli(['retry', tx.id]),
    client
      .begin({ participants: [{ name: 'early', url: yes.url }], timeoutMs: UNDECIDED_TIMEOUT_MS })
      .then((undecided) => cli(['retry', undecided.id])),
  ]);
  t.equal(again.code, 0, 'nothing owed: still a success');
  t.match(again.stdout, /^nothing owed\n/);
  t.equal(early.code, 4, 'before a decision: refused');
  t.match(early.stderr, /HTTP 409/);
});

t.test('abort: an undecided transaction; after a commit decision, refused (exit 4)', async (t) => {
  const undecided = await client.begin({
    participants: [{ name: 'undecided', url: yes.url }],
    timeoutMs: UNDECIDED_TIMEOUT_MS,
  });
  const committed = await client.run({ participants: [{ name: 'done', url: yes.url }] });
  const [aborted, refused, refusedJson] = await Promise.all([
    cli(['abort', undecided.id]),
    cli(['abort', committed.id]),
    cli(['abort', committed.id, '--json']),
  ]);
  t.equal(aborted.code, 0, aborted.stderr);
  t.match(
    aborted.stdout,
    new RegExp(
      `^aborted\\n\\nid +${undecided.id}\\nstate +(aborting|aborted)\\noutcome +abort\\nabort reason +operator\\n`,
    ),
  );
  t.equal((await client.get(undecided.id)).abortReason, 'operator', "an admin's abort is the operator's");

  t.equal(refused.code, 4);
  t.match(refused.stderr, /^commitd: The transaction has a commit decision \(HTTP 409\): /);
  t.equal(refusedJson.code, 4);
  t.equal(refusedJson.stdout, '');
  t.match(JSON.parse(refusedJson.stderr), { type: 'urn:commitd:problem:transaction-committed', status: 409 });
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
  const [listed, listedJson, wrongName] = await Promise.all([
    cli(['list', '--heuristic-unresolved', '--participant', name]),
    cli(['list', '--heuristic-unresolved', '--participant', name, '--json']),
    cli(['resolve', tx.id, '--note', 'x', '--participant', 'fine']),
  ]);
  t.same(
    (JSON.parse(listedJson.stdout) as TransactionPage).transactions.map((x) => x.id),
    [tx.id],
    '--heuristic-unresolved lists it',
  );
  t.match(listed.stdout, new RegExp(`\\n${tx.id} .* mixed outcome; ${name} abort \\(unresolved\\)\\n`));
  t.equal(wrongName.code, 4, 'that participant has no heuristic to resolve');

  const note = 'refunded by hand, ticket OPS-7 \u001b[31m';
  const resolved = await cli(['resolve', tx.id, '--note', note, '--participant', name]);
  t.equal(resolved.code, 0, resolved.stderr);
  t.match(resolved.stdout, /^resolved\n\nid /);
  t.match(resolved.stdout, new RegExp(`\\n${name} +\\S+ +yes +yes +0 +abort \\(resolved\\)`));
  t.match(
    resolved.stdout,
    /\nresolved heuristics:\n {2}\S+: \S+ by \S+: "refunded by hand, ticket OPS-7 \\u001b\[31m"\n$/,
  );
  t.notMatch(resolved.stdout, '\u001b', 'no escape sequence from a note reaches the terminal');
  const view = await client.get(tx.id);
  t.match(view.participants.find((p) => p.name === name)?.heuristicResolved, { note, by: String });
  t.same((await client.list({ heuristicUnresolved: true, participant: name })).transactions, [], 'resolved');

  const again = await cli(['resolve', tx.id, '--note', 'again']);
  t.equal(again.code, 4, 'nothing left to resolve');
  t.match(again.stderr, /HTTP 409/);
});

t.test('stats: the overview', async (t) => {
  const holder = await client.begin({
    participants: [{ name: 'waiting', url: yes.url }],
    timeoutMs: UNDECIDED_TIMEOUT_MS,
  });
  const [table, asJson] = await Promise.all([cli(['stats']), cli(['stats', '--json'])]);
  t.match(JSON.parse(asJson.stdout), {
    inFlight: { active: Number },
    decidedPerSecond: { commit: Number, abort: Number },
    stuckParticipants: Number,
    unresolvedHeuristics: Number,
    oldestUnfinished: { id: String, createdAt: String, ageMs: Number, state: String },
    stuckAfterAttempts: 1,
  });
  t.ok(JSON.parse(asJson.stdout).inFlight.active >= 1);
  t.equal(table.code, 0, table.stderr);
  t.match(table.stdout, /^in flight +active \d+, /);
  t.match(table.stdout, /\ndecided per second +commit [\d.]+, abort [\d.]+ \(last 10 s\)\n/);
  t.match(table.stdout, /\nstuck participants +\d+ \(unacknowledged after 1 attempts\)\n/);
  t.match(table.stdout, /\nunresolved heuristics +\d+\n/);
  t.match(table.stdout, /\noldest unfinished +tx_\S+ \w+, \S+( \S+)? old\n$/);
  await client.abort(holder.id);
});

t.test('exit 3: no such transaction, for every command that takes one; exit 2: an id commitd refuses', async (t) => {
  const cases = [
    ['show', NO_SUCH_ID],
    ['history', NO_SUCH_ID],
    ['retry', NO_SUCH_ID],
    ['abort', NO_SUCH_ID],
    ['resolve', NO_SUCH_ID, '--note', 'x'],
  ];
  const [badId, ...ran] = await Promise.all([cli(['show', 'not an id']), ...cases.map((args) => cli(args))]);
  for (const [i, args] of cases.entries()) {
    t.equal(ran[i]?.code, 3, args.join(' '));
    t.match(ran[i]?.stderr, /HTTP 404/, args.join(' '));
  }
  t.equal(badId?.code, 2, 'commitd answers 400: a usage error');
  t.match(badId?.stderr, /HTTP 400/);
});

t.test('exit 5: no token, an unknown one, a token that is not an admin', async (t) => {
  const [none, wrong, notAdmin] = await Promise.all([
    cli(['list'], { COMMITD_TOKEN: '' }),
    cli(['stats', '--token', 'not-a-token-of-this-commitd']),
    cli(['list'], { COMMITD_TOKEN: CLIENT }),
  ]);
  t.equal(none.code, 5);
  t.match(none.stderr, /HTTP 401/);
  t.equal(wrong.code, 5, '--token wins over COMMITD_TOKEN');
  t.match(wrong.stderr, /HTTP 401/);
  t.equal(notAdmin.code, 5);
  t.match(notAdmin.stderr, /HTTP 403/);
});

t.test('serve: SIGTERM stops the service cleanly (exit 0)', async (t) => {
  service.child.kill('SIGTERM');
  t.same(await service.exited, { code: 0, signal: null });
});
