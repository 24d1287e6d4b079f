// The two ways the benchmarks load a service, and what they measure.
//
// Closed loop (closedLoop): N clients, each starting its next transaction
// when the last one answered. It finds the throughput, but the rate it runs
// at is whatever the machine gave it, and CPU per transaction falls as the
// rate rises (the log's batches grow): two closed-loop runs at 700 and 300
// tx/s say nothing about which build costs more CPU.
//
// Fixed rate (fixedRate): transactions start on a schedule, R per second,
// whatever the answers do (open loop). Two builds run at the same R do the
// same work in the same batches, so their CPU per transaction and their
// latencies compare. Latency is counted from when a transaction was due, not
// from when it could start, so a service that falls behind is charged the
// queueing it caused.

import type { Pool } from 'undici';

export interface LoadResult {
  /** Transactions that succeeded. */
  readonly ok: number;
  readonly failed: number;
  /** Latencies of the successes, in ms, sorted. */
  readonly sortedMs: Float64Array;
  /** Wall time the load took, in seconds (a fixed-rate run waits for its last answers). */
  readonly elapsedS: number;
}

export interface FixedRateResult extends LoadResult {
  /** Transactions that started more than LATE_AFTER_MS after they were due (every slot was busy). */
  readonly startedLate: number;
}

/** Runs `once` from `clients` concurrent loops for `seconds`; collects latencies of the successes. */
export async function closedLoop(
  clients: number,
  seconds: number,
  once: (i: number) => Promise<boolean>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let failed = 0;
  let seq = 0;
  const started = performance.now();
  const end = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        if (await once(seq++)) latencies.push(performance.now() - t);
        else failed++;
      }
    }),
  );
  return {
    ok: latencies.length,
    failed,
    sortedMs: Float64Array.from(latencies).sort(),
    elapsedS: (performance.now() - started) / 1000,
  };
}

const LATE_AFTER_MS = 5;
/** How often the schedule is checked; transactions due meanwhile start together. */
const TICK_MS = 1;

/**
 * Starts `ratePerS × seconds` transactions on an even schedule, at most
 * `maxInFlight` at a time (a transaction due while every slot is busy waits
 * for one, and its latency still counts from when it was due), and resolves
 * when the last has answered.
 */
export function fixedRate(
  ratePerS: number,
  seconds: number,
  maxInFlight: number,
  once: (i: number) => Promise<boolean>,
): Promise<FixedRateResult> {
  const total = Math.max(1, Math.round(ratePerS * seconds));
  const intervalMs = 1000 / ratePerS;
  const latencies: number[] = [];
  let failed = 0;
  let startedLate = 0;
  let started = 0;
  let inFlight = 0;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const finishIfDone = () => {
      if (started === total && inFlight === 0) {
        resolve({
          ok: latencies.length,
          failed,
          sortedMs: Float64Array.from(latencies).sort(),
          elapsedS: (performance.now() - t0) / 1000,
          startedLate,
        });
      }
    };
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / intervalMs) + 1);
      while (started < due && inFlight < maxInFlight) {
        const dueAt = t0 + started * intervalMs;
        if (now - dueAt > LATE_AFTER_MS) startedLate++;
        const i = started++;
        inFlight++;
        once(i).then(
          (ok) => {
            if (ok) latencies.push(performance.now() - dueAt);
            else failed++;
            inFlight--;
            finishIfDone();
          },
          () => {
            failed++;
            inFlight--;
            finishIfDone();
          },
        );
      }
      if (started < total) setTimeout(tick, TICK_MS);
    };
    tick();
  });
}

/** The p-quantile of sorted values (p from 0 to 1); NaN for none. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** POSTs a JSON body and returns the status, the answer's body read and dropped. */
export async function post(pool: Pool, pathname: string, body: string): Promise<number> {
  const res = await pool.request({
    path: pathname,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  await res.body.dump();
  return res.statusCode;
}

/**
 * One two-participant transaction on `pool`'s commitd, true when it
 * committed: a one-shot begin with `"commit": true`, or (explicit) a begin,
 * then a commit call.
 */
export function transactionOn(
  pool: Pool,
  participantUrls: readonly string[],
  explicit: boolean,
): () => Promise<boolean> {
  const participants = participantUrls.map((url, i) => ({ name: `p${i}`, url }));
  if (!explicit) {
    const oneShot = JSON.stringify({ participants, commit: true });
    return async () => (await post(pool, '/v1/transactions', oneShot)) === 200;
  }
  const begin = JSON.stringify({ participants });
  return async () => {
    const res = await pool.request({
      path: '/v1/transactions',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: begin,
    });
    const begun = (await res.body.json()) as { id?: string };
    if (res.statusCode !== 201 || begun.id === undefined) return false;
    return (await post(pool, `/v1/transactions/${begun.id}/commit`, '')) === 200;
  };
}
