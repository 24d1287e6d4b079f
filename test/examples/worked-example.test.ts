// The README's worked example against the real thing: its two participants
// (examples/participant.mjs) and commitd, its one-shot request body taken
// from the README (only the participants' ports changed: tests listen on
// free ports), and its sample answer compared field by field with the real
// answer's. Then the no vote the README describes: a 409 that carries the
// abort decision, the state `aborting` or `aborted`. And the step-by-step
// commands, run by bash with curl as printed (only commitd's address and the
// participants' ports changed).

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { freePort } from '../support/postgres-cluster.js';
import { startService } from '../support/service.js';

const readme = fs.readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8');
const worked = readme.slice(readme.indexOf('## A worked example'));
const body = /-d '(\{\n {2}"participants"[\s\S]*?\n\})'/.exec(worked)?.[1];
const sample = /```json\n([\s\S]*?)\n```/.exec(worked)?.[1];
const steps = /Or step by step[\s\S]*?```sh\n([\s\S]*?)\n```/.exec(worked)?.[1];

async function startParticipant(t: Test, port: number): Promise<void> {
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'examples', 'participant.mjs'), String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the example participant did not start')), 20_000);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** commitd and the example's two participants, on free ports (the README's 9001 and 9002). */
async function startExample(t: Test): Promise<{ commitd: { url: string }; a: number; b: number }> {
  const commitd = await startService(tempDir());
  t.teardown(() => commitd.kill('SIGTERM'));
  const [a, b] = [await freePort(), await freePort()];
  await startParticipant(t, a);
  await startParticipant(t, b);
  return { commitd, a, b };
}

t.test('the one-shot commit answers as the README shows', async (t) => {
  t.ok(body, 'the README has the request body');
  t.ok(sample, 'the README has the sample answer');
  const { commitd, a, b } = await startExample(t);
  const request = JSON.parse((body ?? '').replace('9001', String(a)).replace('9002', String(b)));
  const res = await call(commitd.url, 'POST', '/v1/transactions', request);
  t.equal(res.status, 200, JSON.stringify(res.body));
  const shown = JSON.parse(sample ?? '{}');
  t.same(Object.keys(res.body), Object.keys(shown), 'the same fields, in the same order');
  t.match(res.body, { state: shown.state, outcome: shown.outcome, mixedOutcome: false, abortReason: null });
  t.same(
    res.body.participants.map((p: Record<string, unknown>) => Object.keys(p)),
    shown.participants.map((p: Record<string, unknown>) => Object.keys(p)),
  );

  // "A participant that votes no (… when its payload is {"vote": "no"})".
  request.participants[1].payload = { vote: 'no' };
  const no = await call(commitd.url, 'POST', '/v1/transactions', request);
  t.equal(no.status, 409);
  t.equal(no.body.transaction.outcome, 'abort', 'a 409 carries the decision');
  t.match(no.body.transaction.state, /^(aborting|aborted)$/, 'the state may still be aborting');
  t.equal(no.body.transaction.abortReason, 'vote');
});

t.test('the step-by-step commands, as printed, enlist, prepare, commit and read the outcome', async (t) => {
  t.ok(steps, 'the README has the step-by-step commands');
  const { commitd, a, b } = await startExample(t);
  // One answer per line (curl prints none after a body), so each can be read.
  const script = `curl() { command curl --max-time 30 -w '\\n' "$@"; }\n${(steps ?? '')
    .replaceAll('localhost:7070', commitd.url.replace(/^http:\/\//, ''))
    .replace('9001', String(a))
    .replace('9002', String(b))}`;
  const output = await new Promise<string>((resolve) => {
    execFile('bash', ['-c', script], { timeout: 60_000 }, (_error, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
  const answers = output.trim().split('\n');
  t.equal(answers.length, 5, output);
  const [enlistedOrders, enlistedPayments, prepared, committed, outcome] = answers.map((line) => JSON.parse(line));
  t.equal(enlistedOrders.participants.length, 1);
  t.equal(enlistedPayments.participants.length, 2);
  t.equal(prepared.state, 'prepared', 'prepare: 200, state "prepared"');
  t.equal(committed.state, 'committed', 'commit: 200, state "committed"');
  t.same(outcome, { outcome: 'commit' });
});
