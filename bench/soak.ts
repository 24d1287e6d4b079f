// npm run soak: memory over a long run. The built coordinator and two
// in-memory participants; 64 clients run one-shot commits until --transactions
// (default 1,000,000) have committed. Every --every seconds it prints the
// coordinator's resident memory, the decision log's size on disk and the
// transactions in flight; at the end it compares the first and second half of
// the run: with compaction keeping up, memory and log size stay flat.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { int, parseFlags } from '../src/cli/args.js';
import { peakRssMb, rssMb, saveResult, scrape, startCoordinator, startParticipants } from './processes.js';

interface Sample {
  seconds: number;
  committed: number;
  rssMb: number;
  logMb: number;
  inFlight: number;
}

function dirMb(dir: string): number {
  let bytes = 0;
  for (const f of fs.readdirSync(dir)) bytes += fs.statSync(path.join(dir, f)).size;
  return bytes / 2 ** 20;
}

async function main(): Promise<void> {
  const { values: flags } = parseFlags(process.argv.slice(2), {
    transactions: int(1, 1_000_000_000, 1_000_000),
    every: int(1, 3600, 10),
    clients: int(1, 10_000, 64),
    'retention-ms': int(0, 365 * 24 * 3600 * 1000, 10_000),
  });
  const target = flags.transactions;
  const everyS = flags.every;
  const clients = flags.clients;
  const retentionMs = flags['retention-ms'];
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-soak-'));
  const dataDir = path.join(work, 'data');
  const participants = await startParticipants(null);
  const coordinator = await startCoordinator(dataDir, { env: { COMMITD_RETENTION_MS: String(retentionMs) } });
  const pid = coordinator.child.pid as number;
  const pool = new Pool(coordinator.url, { connections: clients });
  const body = JSON.stringify({
    participants: participants.urls.map((url, i) => ({ name: `p${i}`, url })),
    commit: true,
  });

  let committed = 0;
  let failed = 0;
  const started = performance.now();
  const samples: Sample[] = [];
  const sample = async () => {
    const metrics = await scrape(coordinator.url);
    let inFlight = 0;
    for (const [k, v] of metrics) if (k.startsWith('commitd_transactions_in_flight')) inFlight += v;
    const s: Sample = {
      seconds: (performance.now() - started) / 1000,
      committed,
      rssMb: rssMb(pid),
      logMb: dirMb(dataDir),
      inFlight,
    };
    samples.push(s);
    console.log(
      `${s.seconds.toFixed(0).padStart(5)} s  ${String(s.committed).padStart(8)} committed  ` +
        `rss ${s.rssMb.toFixed(0).padStart(4)} MB  log ${s.logMb.toFixed(1).padStart(6)} MB  in flight ${s.inFlight}`,
    );
  };
  const timer = setInterval(() => void sample(), everyS * 1000);
  console.log(`soak: ${target} one-shot commits, ${clients} clients, retention ${retentionMs} ms`);
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (committed + failed < target) {
        const res = await pool.request({
          path: '/v1/transactions',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        await res.body.dump();
        if (res.statusCode === 200) committed++;
        else failed++;
      }
    }),
  );
  clearInterval(timer);
  await sample();
  const half = samples.filter((s) => s.committed >= target / 2);
  const firstHalf = samples.filter((s) => s.committed < target / 2);
  const max = (xs: Sample[], f: (s: Sample) => number) => Math.max(...xs.map(f));
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `soak: transactions=${committed} failed=${failed} seconds=${seconds.toFixed(0)} tps=${(committed / seconds).toFixed(0)} ` +
      `peak_rss_mb=${peakRssMb(pid).toFixed(0)} rss_max_first_half_mb=${max(firstHalf, (s) => s.rssMb).toFixed(0)} ` +
      `rss_max_second_half_mb=${max(half, (s) => s.rssMb).toFixed(0)} log_max_first_half_mb=${max(firstHalf, (s) => s.logMb).toFixed(1)} ` +
      `log_max_second_half_mb=${max(half, (s) => s.logMb).toFixed(1)}`,
  );
  saveResult('soak', 'soak', {
    transactions: committed,
    failed,
    seconds: Math.round(seconds),
    tps: Math.round(committed / seconds),
    retentionMs,
    peakRssMb: Math.round(peakRssMb(pid)),
    rssMaxFirstHalfMb: Math.round(max(firstHalf, (s) => s.rssMb)),
    rssMaxSecondHalfMb: Math.round(max(half, (s) => s.rssMb)),
    logMaxFirstHalfMb: Number(max(firstHalf, (s) => s.logMb).toFixed(1)),
    logMaxSecondHalfMb: Number(max(half, (s) => s.logMb).toFixed(1)),
  });
  await pool.close();
  coordinator.child.kill('SIGTERM');
  participants.child.kill('SIGTERM');
  await new Promise((r) => coordinator.child.once('exit', r));
  fs.rmSync(work, { recursive: true, force: true });
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
