// The fixed-rate load (bench/load.ts) that bench:ab compares CPU and latency
// with: it starts exactly rate × seconds transactions, never more at once
// than allowed, and charges a transaction that could not start on time the
// wait it had (latency from when it was due), so a service that falls behind
// cannot look fast by holding the load back.

import t from 'tap';
import { closedLoop, fixedRate, percentile } from '../../bench/load.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('fixed rate: the count, the bound on transactions at once, latency from when each was due', async (t) => {
  let inFlight = 0;
  let inFlightMax = 0;
  const SERVICE_MS = 50;
  const once = async () => {
    inFlight++;
    inFlightMax = Math.max(inFlightMax, inFlight);
    await sleep(SERVICE_MS);
    inFlight--;
    return true;
  };
  // 10 due over 100 ms, one at a time, each taking 50 ms: the last is due
  // at 90 ms and cannot start before 450 ms.
  const r = await fixedRate(100, 0.1, 1, once);
  t.equal(r.ok, 10, 'rate × seconds transactions');
  t.equal(r.failed, 0);
  t.equal(inFlightMax, 1, 'never more at once than allowed');
  t.ok(r.startedLate >= 8, `the queue shows as late starts (${r.startedLate})`);
  const slowest = percentile(r.sortedMs, 1);
  t.ok(slowest >= 10 * SERVICE_MS - 90 - 1, `the last one is charged its wait: ${slowest.toFixed(0)} ms`);
});

t.test('fixed rate: failures counted, never among the latencies', async (t) => {
  const r = await fixedRate(200, 0.05, 10, async (i) => {
    if (i % 2 === 1) throw new Error('refused');
    return i % 4 === 0;
  });
  t.equal(r.ok + r.failed, 10);
  t.equal(r.ok, 3, 'transactions 0, 4, 8');
  t.equal(r.sortedMs.length, r.ok);
});

t.test('closed loop: each client waits for its answer before the next', async (t) => {
  let inFlightMax = 0;
  let inFlight = 0;
  const r = await closedLoop(3, 0.1, async () => {
    inFlightMax = Math.max(inFlightMax, ++inFlight);
    await sleep(10);
    inFlight--;
    return true;
  });
  t.equal(inFlightMax, 3, 'three clients, three at once');
  t.ok(r.ok > 3, `${r.ok} transactions`);
  t.equal(r.sortedMs.length, r.ok);
});
