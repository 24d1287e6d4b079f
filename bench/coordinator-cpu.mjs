// The coordinator's own CPU per transaction, in process: the real coordinator
// and SQLite log, participants that answer at once (no HTTP, no network), 64
// one-shot two-participant transactions at a time. What the runtime itself
// costs, apart from the transport, which dominates the HTTP benchmark.
//
// `--root DIR` loads another build (a worktree of an older commit, built with
// `npx tsc -p tsconfig.build.json`), so two commits compare in one run:
//   npm run bench:cpu -- --root /tmp/wt-old --root . --pairs 6
// Roots run interleaved, pair by pair; the median per root is printed. Plain
// JavaScript, so that it loads any commit's dist/ without being part of it.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    root: { type: 'string', multiple: true, default: ['.'] },
    pairs: { type: 'string', default: '3' },
    transactions: { type: 'string', default: '5000' },
    child: { type: 'boolean', default: false },
  },
});
const transactions = Number(values.transactions);
const pairs = Number(values.pairs);
if (!Number.isInteger(transactions) || transactions < 100 || transactions > 1_000_000) {
  throw new Error('--transactions must be an integer from 100 to 1000000');
}
if (!Number.isInteger(pairs) || pairs < 1 || pairs > 50) throw new Error('--pairs must be an integer from 1 to 50');

if (values.child) {
  console.log(JSON.stringify(await measure(path.resolve(values.root[0]), transactions)));
  process.exit(0);
}

// Each measurement in a fresh process: one build's JIT state never helps another's.
const { execFileSync } = await import('node:child_process');
const script = new URL(import.meta.url).pathname;
const results = new Map(values.root.map((r) => [r, []]));
for (let pair = 0; pair < pairs; pair++) {
  for (const root of values.root) {
    const out = execFileSync(
      process.execPath,
      [script, '--child', '--root', root, '--transactions', `${transactions}`],
      {
        encoding: 'utf8',
      },
    );
    const result = JSON.parse(out.trim().split('\n').at(-1));
    results.get(root).push(result);
    console.log(`pair ${pair + 1} ${root}: ${result.cpuUsPerTx} µs CPU/tx, ${result.logBytesPerTx} log bytes/tx`);
  }
}
for (const [root, runs] of results) {
  const cpu = runs.map((r) => r.cpuUsPerTx).sort((a, b) => a - b);
  console.log(`${root}: median ${cpu[Math.floor(cpu.length / 2)]} µs CPU/tx (runs ${cpu.join(', ')})`);
}

/** What the service's observer does (src/assemble.ts), for builds whose coordinator reports through one. */
function metricsObserver(m) {
  return {
    begun: () => m.transactionsBegun.inc(),
    decided: (outcome, reason, phaseOneSeconds) => {
      m.transactionsDecided.inc({ outcome, reason: reason ?? '' });
      if (phaseOneSeconds !== null) m.phaseDuration.observe({ phase: 'prepare' }, phaseOneSeconds);
    },
    finished: (outcome, phaseTwoSeconds) => {
      m.transactionsFinished.inc({ outcome });
      if (phaseTwoSeconds !== null) m.phaseDuration.observe({ phase: outcome }, phaseTwoSeconds);
    },
    heuristic: (r) => m.heuristics.inc({ heuristic: r.heuristic }),
    recovered: (n) => m.recovered.inc(n),
    compacted: (n) => m.compacted.inc(n),
    stuckParticipants: (n) => m.stuckParticipants.set(n),
    unresolvedHeuristics: (n) => m.heuristicsUnresolved?.set(n),
    oldestUnfinishedAgeSeconds: (s) => m.oldestUnfinishedAge?.set(s),
    operatorAction: (action) => m.operatorActions?.inc({ action }),
  };
}

async function measure(root, count) {
  const load = (file) => import(pathToFileURL(path.join(root, 'dist', 'src', file)).href);
  const { Coordinator } = await load('coordinator/coordinator.js');
  const { SqliteLog } = await load('log/sqlite-log.js');
  const { Metrics } = await load('metrics.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-cpu-'));
  // Option names of every commit since the coordinator's first (renamed once): the unknown ones are ignored.
  const log = new SqliteLog({ dataDir: dir, batchRecordsMax: 512, maxBatchRecords: 512, lazyFlushDelayMs: 10 });
  const participants = {
    prepare: () => Promise.resolve({ kind: 'vote', vote: 'yes' }),
    deliver: () => Promise.resolve({ kind: 'acknowledged' }),
    close: async () => {},
  };
  const limits = { inFlightMax: 100_000, maxInFlight: 100_000, participantsMax: 16, maxParticipants: 16 };
  const metrics = new Metrics({ processMetrics: false });
  const coordinator = new Coordinator({
    log,
    participants,
    // The old coordinator writes Prometheus metrics itself; later ones report
    // to an observer, which the service maps to the same metrics: both pay them.
    metrics,
    observer: metricsObserver(metrics),
    ...limits,
    defaultTimeoutMs: 30_000,
    inFlightBytesMax: 1e9,
    inFlightPerCallerMax: 0,
    inFlightBytesPerCallerMax: 0,
    retryDelayMsMin: 10,
    retryDelayMsMax: 100,
    stuckAfterAttempts: 10,
    answerWaitMsMax: 10_000,
    sweepIntervalMs: 1000,
    retentionMs: 3_600_000,
    idempotencyKeyRetentionMs: 86_400_000,
    compactionBatchMax: 100,
    compactionBatch: 100,
    recoveryCallsMax: 64,
  });
  await coordinator.recover();
  const request = () => ({
    participants: [
      { name: 'orders', url: 'http://127.0.0.1:1/tx', database: null, payloadJson: '{"sku":"A-1","qty":2}' },
      { name: 'payments', url: 'http://127.0.0.1:2/tx', database: null, payloadJson: '{"amount":1200}' },
    ],
    timeoutMs: null,
    idempotencyKey: null,
    idempotencyScope: '',
    requestHash: null,
    metadataJson: null,
    commit: true,
    callerId: '',
    by: { role: 'client', tokenId: 'abcdef012345', address: '127.0.0.1' },
  });
  const run = async (n) => {
    let started = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (started++ < n) await coordinator.begin(request());
      }),
    );
  };
  await run(500); // warm-up: the JIT, the log's first pages
  await new Promise((r) => setTimeout(r, 200));
  const cpuBefore = process.cpuUsage();
  await run(count);
  await new Promise((r) => setTimeout(r, 100)); // the last lazy writes
  const cpu = process.cpuUsage(cpuBefore);
  await coordinator.stop();
  await log.close();
  const logBytes = fs.statSync(path.join(dir, 'commitd.db')).size;
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    root,
    cpuUsPerTx: Math.round((cpu.user + cpu.system) / count),
    logBytesPerTx: Math.round(logBytes / (count + 500)),
  };
}
