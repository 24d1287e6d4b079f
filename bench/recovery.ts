// npm run bench:recovery: kill -9 with --transactions (default 10,000)
// unfinished transactions, half decided commit (phase two not acknowledged),
// half undecided (prepares unanswered); restart and measure how long until
// every participant has its outcome, and the coordinator's memory meanwhile.
// Participants run in this process and count what they did.

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { int, parseFlags } from '../src/cli/args.js';
import { peakRssMb, saveResult, scrape, startCoordinator } from './processes.js';

type Mode = 'stall' | 'normal';

/**
 * A participant. While `stall`: commit answers 503 (the decision stands, the
 * coordinator keeps retrying) and a prepare marked undecided is never
 * answered. Afterwards it answers everything.
 */
function participant(state: Map<string, string>, commitSeen: Set<string>, mode: { value: Mode }) {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const { transactionId: id, payload } = JSON.parse(Buffer.concat(chunks).toString());
      const action = req.url?.split('/').pop();
      if (action === 'prepare') {
        if (mode.value === 'stall' && payload?.undecided) return; // never answered
        state.set(id, 'prepared');
        res.end('{"vote":"yes"}');
        return;
      }
      if (action === 'commit' && mode.value === 'stall') {
        commitSeen.add(id);
        res.writeHead(503).end('{}');
        return;
      }
      const known = state.has(id);
      state.set(id, action === 'commit' ? 'committed' : 'aborted');
      res.writeHead(known ? 200 : 404).end('{}');
    });
  });
  server.keepAliveTimeout = 60_000;
  return server;
}

async function main(): Promise<void> {
  const n = parseFlags(process.argv.slice(2), { transactions: int(1, 1_000_000, 10_000) }).values.transactions;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-recovery-'));
  const dataDir = path.join(work, 'data');
  const mode = { value: 'stall' as Mode };
  const states = [new Map<string, string>(), new Map<string, string>()];
  const commitSeen = [new Set<string>(), new Set<string>()];
  const servers = states.map((s, i) => participant(s, commitSeen[i] as Set<string>, mode));
  const ports = await Promise.all(
    servers.map(
      (s) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port))),
    ),
  );
  const urls = ports.map((p) => `http://127.0.0.1:${p}/tx`);
  let coordinator = await startCoordinator(dataDir, {
    // Long prepare timeout: undecided stays undecided while loading.
    env: { COMMITD_PREPARE_TIMEOUT_MS: '600000', COMMITD_RETRY_DELAY_MS_MIN: '1000' },
  });
  const half = Math.floor(n / 2);
  const pool = new Pool(coordinator.url, { connections: half + 64 });
  const begin = (undecided: boolean) =>
    pool
      .request({
        path: '/v1/transactions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          participants: urls.map((url, i) => ({ name: `p${i}`, url, payload: { undecided } })),
          commit: true,
          timeoutMs: 3_600_000,
        }),
      })
      .then((r) => r.body.dump())
      .catch(() => {});
  const waitFor = async (what: string, done: () => boolean | Promise<boolean>) => {
    for (let i = 0; i < 12_000; i++) {
      if (await done()) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`timed out loading: ${what}`);
  };
  console.log(`recovery: loading ${half} decided and ${n - half} undecided transactions…`);
  // Decided first: prepared at both, commit durable, phase two failing.
  await Promise.all(Array.from({ length: half }, () => begin(false)));
  await waitFor('decided', () => commitSeen.every((s) => s.size >= half));
  // Then undecided: begun durably, prepares unanswered or still queued.
  for (let i = half; i < n; i++) void begin(true);
  await waitFor('undecided', async () => (await scrape(coordinator.url)).get('commitd_transactions_begun_total') === n);
  coordinator.child.kill('SIGKILL');
  await new Promise((r) => coordinator.child.once('exit', r));
  await pool.destroy();
  console.log(`killed with ${n} unfinished transactions`);

  mode.value = 'normal';
  const restartedAt = performance.now();
  coordinator = await startCoordinator(dataDir);
  const readyS = (performance.now() - restartedAt) / 1000;
  const pid = coordinator.child.pid as number;
  const count = (s: Map<string, string> | undefined, v: string) =>
    [...(s?.values() ?? [])].filter((x) => x === v).length;
  const finished = () => states.every((s) => count(s, 'committed') === half && count(s, 'aborted') >= n - half);
  let polls = 0;
  while (!finished() && polls++ < 12_000) await new Promise((r) => setTimeout(r, 10));
  const doneS = (performance.now() - restartedAt) / 1000;
  const committed = count(states[0], 'committed');
  const aborted = count(states[0], 'aborted');
  const split = [...(states[0]?.keys() ?? [])].filter((id) => states[0]?.get(id) !== states[1]?.get(id)).length;
  console.log(
    `recovery: transactions=${n} ready_after_s=${readyS.toFixed(2)} all_finished_after_s=${doneS.toFixed(2)} ` +
      `committed=${committed} aborted=${aborted} split=${split} finished=${finished()} peak_rss_mb=${peakRssMb(pid).toFixed(0)}`,
  );
  saveResult('recovery', 'bench:recovery', {
    transactions: n,
    readyAfterS: Number(readyS.toFixed(2)),
    allFinishedAfterS: Number(doneS.toFixed(2)),
    committed,
    aborted,
    split,
    finished: finished(),
    peakRssMb: Math.round(peakRssMb(pid)),
  });
  coordinator.child.kill('SIGTERM');
  await new Promise((r) => coordinator.child.once('exit', r));
  for (const s of servers) s.close();
  fs.rmSync(work, { recursive: true, force: true });
  process.exitCode = finished() && split === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
