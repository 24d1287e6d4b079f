// Settling and asking the coordinators of a chaos run (npm run chaos, npm run
// chaos:cluster): after the faults, wait until every transaction anyone saw is
// committed or aborted, then ask its outcome. Reads go through a Get, so a
// run with several coordinators can spread them over all of them.

import type { Pool } from 'undici';
import { idsSeen } from './chaos-check.js';
import type { ClientRecord } from './chaos-load.js';
import { sleep } from './chaos-processes.js';

const CHECK_CONCURRENCY = 32;
const LIST_PAGE = 500;

/** A GET of the coordinator API: its status and parsed body. Throws if no answer comes. */
export type Get = (pathname: string) => Promise<{ status: number; body: any }>;

/** What the checker needs of the coordinator's view of a transaction. */
export interface View {
  readonly state: string;
  readonly outcome: string | null;
  readonly heuristics: string | null;
}

export function toView(tx: any): View {
  const heuristics = (tx.participants ?? [])
    .filter((p: any) => p.heuristic)
    .map((p: any) => `${p.name}:${p.heuristic}`)
    .join(',');
  return { state: String(tx.state), outcome: tx.outcome ?? null, heuristics: heuristics || null };
}

export const FINAL = new Set(['committed', 'aborted']);

/** GETs through one pool. */
export const getFrom =
  (pool: Pool): Get =>
  (pathname) =>
    getJson(pool, pathname);

async function getJson(pool: Pool, pathname: string): Promise<{ status: number; body: any }> {
  const res = await pool.request({ path: pathname, method: 'GET', headersTimeout: 30_000, bodyTimeout: 30_000 });
  const text = await res.body.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.statusCode, body };
}

/** Runs `fn` over `items` with at most `CHECK_CONCURRENCY` at a time. */
export async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CHECK_CONCURRENCY, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** Every transaction the coordinator lists, page by page. */
export async function listAll(get: Get, maxPages: number): Promise<Map<string, View>> {
  const views = new Map<string, View>();
  let after: string | null = null;
  for (let page = 0; page < maxPages; page++) {
    const q = `/v1/transactions?limit=${LIST_PAGE}${after ? `&after=${after}` : ''}`;
    const { status, body } = await get(q);
    if (status !== 200) throw new Error(`GET ${q} answered ${status}: ${JSON.stringify(body).slice(0, 300)}`);
    for (const tx of body.transactions) views.set(tx.id, toView(tx));
    after = body.next;
    if (after === null) return views;
  }
  throw new Error(`the coordinator's list is longer than ${maxPages} pages`);
}

export interface Settled {
  readonly views: Map<string, View>;
  /** Ids the coordinator answers 404 for. */
  readonly missing: Set<string>;
  /** Ids still not committed or aborted when the time ran out. */
  readonly unsettled: Set<string>;
}

/**
 * Waits until every id is committed or aborted at the coordinator (or the
 * time is up). `ensureUp` restarts whatever died meanwhile: an exit now is a
 * violation already recorded, and the rest must still be checked.
 */
export async function settle(
  get: Get,
  ids: Set<string>,
  skip: Set<string>,
  timeoutMs: number,
  ensureUp: () => Promise<void>,
): Promise<Settled> {
  const deadline = Date.now() + timeoutMs;
  const views = await listAll(get, Math.ceil((ids.size * 2) / LIST_PAGE) + 100);
  const missing = new Set<string>();
  const unsettled = new Set<string>();
  for (const id of new Set([...ids, ...views.keys()])) {
    if (!FINAL.has(views.get(id)?.state ?? '') && !skip.has(id)) unsettled.add(id);
  }
  for (let round = 0; unsettled.size > 0 && Date.now() < deadline && round < 100_000; round++) {
    await ensureUp();
    await eachLimited([...unsettled], async (id) => {
      const { status, body } = await get(`/v1/transactions/${id}`).catch(() => ({ status: 0, body: null }));
      if (status === 404) {
        missing.add(id);
        unsettled.delete(id);
      } else if (status === 200) {
        views.set(id, toView(body));
        if (FINAL.has(body.state)) unsettled.delete(id);
      }
    });
    if (unsettled.size > 0) await sleep(250);
  }
  return { views, missing, unsettled };
}

export async function fetchOutcomes(get: Get, ids: Iterable<string>): Promise<Map<string, string>> {
  const outcomes = new Map<string, string>();
  await eachLimited([...ids], async (id) => {
    try {
      const { status, body } = await get(`/v1/transactions/${id}/outcome`);
      outcomes.set(id, status === 200 ? String(body.outcome) : `HTTP ${status}`);
    } catch (error) {
      outcomes.set(id, `no answer: ${(error as Error).message}`);
    }
  });
  return outcomes;
}

export interface AfterFaults {
  /** The run's name, for its progress lines. */
  readonly label: string;
  readonly elapsed: () => string;
  /** The client loops: each ends after its logical transaction in progress once the faults are over. */
  readonly loops: readonly Promise<void>[];
  readonly drainMs: number;
  /** Starts whatever is down (a start a faulter left undone, an exit of its own). */
  readonly ensureUp: () => Promise<void>;
  /** The participants' files. */
  readonly files: readonly string[];
  readonly records: readonly ClientRecord[];
  readonly get: Get;
  readonly settleTimeoutMs: number;
}

/**
 * Once the faults are over: everything runs again, the clients get their
 * last answers (within `drainMs`, or this throws), every transaction anyone
 * saw settles, and its outcome is asked.
 */
export async function drainAndSettle(a: AfterFaults) {
  await a.ensureUp();
  console.error(`${a.label}: t=${a.elapsed()} faults stopped, waiting for the clients' last answers`);
  const drained = await Promise.race([Promise.all(a.loops).then(() => true), sleep(a.drainMs).then(() => false)]);
  if (!drained) throw new Error(`client loops did not finish within ${a.drainMs} ms of the faults stopping`);

  const { seen, refused } = idsSeen(a.files, a.records);
  console.error(`${a.label}: t=${a.elapsed()} settling ${seen.size} transactions`);
  const settled = await settle(a.get, seen, refused, a.settleTimeoutMs, a.ensureUp);
  const ids = [...new Set([...seen, ...settled.views.keys(), ...settled.missing])];
  console.error(`${a.label}: t=${a.elapsed()} asking the outcome of ${ids.length} transactions`);
  const outcomes = await fetchOutcomes(a.get, ids);
  return { settled, outcomes, ids };
}
