// node --expose-gc dist/bench/stuck.js [--stuck 2000] [--hanging 1000] [--oneShots 200]
//
// Stuck work (issue 23), in one process, loopback only, bounded in time:
// 1. memory: --stuck one-shots whose participant votes yes and then never
//    answers its commit (the connection is dropped), so each stays decided
//    and unacknowledged, retried; heap after a full GC, before and after,
//    per stuck transaction (no payload, no metadata);
// 2. latency: --hanging one-shots whose second participant, each on an
//    origin of its own (127.0.x.y), votes yes and then never answers its
//    commit (the request hangs until the call's timeout): while they are
//    retried, the latency of --oneShots one-shots to a healthy participant.
// Prints both as JSON.

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import type { Readiness } from '../src/api/readiness.js';
import { buildApi } from '../src/api/server.js';
import { assemble } from '../src/assemble.js';
import { int, parseFlags } from '../src/cli/args.js';
import { loadConfig } from '../src/config.js';
import { Metrics } from '../src/metrics.js';

const {
  stuck: STUCK,
  hanging: HANGING,
  oneShots: ONE_SHOTS,
} = parseFlags(process.argv.slice(2), {
  stuck: int(1, 100_000, 2000),
  hanging: int(1, 60_000, 1000),
  oneShots: int(1, 10_000, 200),
}).values;
const exposedGc = (globalThis as { gc?: () => void }).gc;
if (exposedGc === undefined) throw new Error('run with node --expose-gc');
const gc: () => void = exposedGc;

/** Votes yes; a commit is dropped (`drop`) or left hanging (`hang`); anything else answers 200. */
function participant(commit: 'drop' | 'hang' | 'answer'): Promise<{ port: number; close: () => void }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const action = req.url?.split('/').pop();
      if (action === 'prepare') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"vote":"yes"}');
      if (action === 'commit' && commit === 'drop') return req.socket.destroy();
      if (action === 'commit' && commit === 'hang') return;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '0.0.0.0', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => {
          server.closeAllConnections();
          server.close();
        },
      }),
    ),
  );
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-bench-stuck-'));
  const base = loadConfig({});
  const config = {
    ...base,
    server: { ...base.server, dataDir, logLevel: 'silent' as const },
    transactions: { ...base.transactions, maxInFlightPerCaller: base.transactions.maxInFlight },
    participants: { ...base.participants, phaseTwoTimeoutMs: 2_000, retryDelayMsMin: 50, retryDelayMsMax: 2_000 },
  };
  const metrics = new Metrics({ processMetrics: false });
  const readiness: Readiness = { ready: true, stopping: false, logWritable: true };
  const quiet = { logError: () => {}, error: () => {}, heuristic: () => {} };
  const parts = await assemble(config, metrics, readiness, quiet);
  const app = await buildApi({
    coordinator: parts.coordinator,
    deploymentId: parts.deploymentId,
    config,
    metrics,
    readiness,
    logger: false,
    urlPolicy: parts.urlPolicy,
  });
  await parts.coordinator.recover();
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const begin = async (participants: Array<{ name: string; url: string }>) => {
    const res = await request(`${url}/v1/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ participants, commit: true }),
    });
    await res.body.text();
    return res.statusCode;
  };

  // 1. Memory per stuck transaction.
  const dropping = await participant('drop');
  const dropUrl = `http://127.0.0.1:${dropping.port}/tx`;
  for (let i = 0; i < 50; i++) await begin([{ name: 'p', url: dropUrl }]); // warm-up
  gc();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < STUCK; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, STUCK - i) }, () => begin([{ name: 'p', url: dropUrl }])));
  }
  gc();
  gc();
  const heapAfter = process.memoryUsage().heapUsed;
  const bytesPerStuck = Math.round((heapAfter - heapBefore) / STUCK);
  console.log(
    JSON.stringify({
      stuck: STUCK,
      heapBeforeMb: Math.round(heapBefore / 1e5) / 10,
      heapAfterMb: Math.round(heapAfter / 1e5) / 10,
      bytesPerStuckTransaction: bytesPerStuck,
    }),
  );

  // 2. Healthy latency while hanging participants are retried.
  const healthy = await participant('answer');
  const healthyUrl = `http://127.0.0.1:${healthy.port}/tx`;
  const hanging = await participant('hang');
  const hangingUrl = (i: number) => `http://127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}:${hanging.port}/tx`;
  const hangingStartedAt = performance.now();
  for (let i = 0; i < HANGING; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, HANGING - i) }, (_, j) =>
        begin([
          { name: 'a', url: healthyUrl },
          { name: 'b', url: hangingUrl(i + j) },
        ]),
      ),
    );
  }
  const hangingBeginsS = Math.round((performance.now() - hangingStartedAt) / 100) / 10;
  console.log(JSON.stringify({ hangingOrigins: HANGING, hangingBeginsS }));
  const latenciesMs: number[] = [];
  // Bounded: at most a minute of one-shots, whatever their latency.
  const measureUntil = Date.now() + 60_000;
  for (let i = 0; i < ONE_SHOTS && Date.now() < measureUntil; i++) {
    const startedAt = performance.now();
    await begin([{ name: 'a', url: healthyUrl }]);
    latenciesMs.push(performance.now() - startedAt);
  }
  latenciesMs.sort((a, b) => a - b);
  const at = (q: number) => Math.round((latenciesMs[Math.floor(q * (latenciesMs.length - 1))] ?? 0) * 10) / 10;
  console.log(
    JSON.stringify({
      healthyOneShots: latenciesMs.length,
      healthyP50Ms: at(0.5),
      healthyP99Ms: at(0.99),
    }),
  );
  await app.close();
  await parts.coordinator.stop();
  await parts.participants.close();
  await parts.log.close();
  dropping.close();
  healthy.close();
  hanging.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
  process.exit(0);
}

void main();
