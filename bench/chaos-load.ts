// The clients of a chaos run (npm run chaos, npm run chaos:cluster): a call
// is repeated, unchanged, until it gets an answer that decides something
// (refused connections, resets, timeouts and 503s are retried, on whatever
// coordinator `pick` names next), and every logical transaction ends as a
// record of what its client was told, for the checker.

import type { Pool } from 'undici';
import type { Rng } from '../test/support/rng.js';
import { runtimeViolations, sleep } from './chaos-processes.js';

/** A logical transaction is retried (same idempotency key) for at most this long. */
export const CLIENT_GIVE_UP_MS = 120_000;
const CLIENT_MAX_ATTEMPTS = 20_000;

/** What a client was told of its transaction's outcome. */
export type Told = 'commit' | 'abort';

export interface ClientRecord {
  readonly key: string;
  /** How the client ran it: one-shot, begin-commit, begin-abort, begin-enlist-commit. */
  readonly flow: string;
  /** The HTTP status of the answer that told the client the outcome, or gave-up. */
  readonly answer: number | 'gave-up';
  /** null when the client gave up. */
  readonly told: Told | null;
  readonly txId: string | null;
  readonly attempts: number;
  /** Every transaction id the answers for this key named: one, unless a retry was answered with another. */
  readonly idsSeen: readonly string[];
}

export interface LoadStats {
  networkErrors: number;
  unavailable: number;
  unexpected: number;
}

export function newLoadStats(): LoadStats {
  return { networkErrors: 0, unavailable: 0, unexpected: 0 };
}

/** One logical transaction's budget: every call made for it counts. */
export class Budget {
  private readonly startedAt = Date.now();
  attempts = 0;
  readonly idsSeen = new Set<string>();

  get spent(): boolean {
    return this.attempts >= CLIENT_MAX_ATTEMPTS || Date.now() - this.startedAt >= CLIENT_GIVE_UP_MS;
  }
}

export interface Call {
  readonly method: 'POST' | 'GET';
  readonly path: string;
  readonly body?: string;
}

export interface Client {
  /** The pool of the coordinator the next attempt goes to. */
  readonly pick: () => Pool;
  readonly rng: Rng;
  readonly stats: LoadStats;
  readonly requestTimeoutMs: number;
}

export interface Reply {
  readonly status: number;
  readonly text: string;
  readonly body: any;
}

/**
 * Sends the call until an answer other than 503 comes back (or the budget is
 * spent: null). A refused connection or a reset (the coordinator down or
 * killed mid-request), a timeout (stopped) and a 503 (not ready, ownership
 * moving, outcome pending) are retried, each on the coordinator picked next.
 */
export async function callUntilAnswered(client: Client, call: Call, budget: Budget): Promise<Reply | null> {
  const { rng, stats } = client;
  while (!budget.spent) {
    budget.attempts++;
    let status: number;
    let text: string;
    try {
      const res = await client.pick().request({
        path: call.path,
        method: call.method,
        headers: call.body === undefined ? {} : { 'content-type': 'application/json' },
        body: call.body,
        headersTimeout: client.requestTimeoutMs,
        bodyTimeout: client.requestTimeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch {
      stats.networkErrors++;
      await sleep(rng.between([20, 100]));
      continue;
    }
    if (status === 503) {
      stats.unavailable++;
      await sleep(rng.between([20, 100]));
      continue;
    }
    let body: any = null;
    try {
      body = JSON.parse(text);
    } catch {
      // judged by the caller
    }
    return { status, text, body };
  }
  return null;
}

/** The transaction an answer is about: the body, or a problem's `transaction`. */
export function transactionOf(reply: Reply): any {
  return reply.status === 409 ? reply.body?.transaction : reply.body;
}

/**
 * What a commit (one-shot or explicit) or abort call told its client, or
 * null if the answer is not one the API may give: 200/202 commit and 409
 * abort for a commit, 200 abort and 409 commit (already committed) for an
 * abort.
 */
export function toldBy(kind: 'commit' | 'abort', reply: Reply): Told | null {
  const tx = transactionOf(reply);
  if (typeof tx?.id !== 'string') return null;
  const committed = tx.outcome === 'commit' && (tx.state === 'committed' || tx.state === 'committing');
  const aborted = tx.outcome === 'abort' && (tx.state === 'aborted' || tx.state === 'aborting');
  if (kind === 'commit') {
    if (reply.status === 200 && committed && tx.state === 'committed') return 'commit';
    if (reply.status === 202 && committed && tx.state === 'committing') return 'commit';
    if (reply.status === 409 && aborted) return 'abort';
    return null;
  }
  if (reply.status === 200 && aborted) return 'abort';
  if (reply.status === 409 && committed) return 'commit';
  return null;
}

/** Records an answer the API may not give; the caller tries again. */
export function unexpected(client: Client, key: string, call: Call, reply: Reply): void {
  client.stats.unexpected++;
  const id = transactionOf(reply)?.id;
  runtimeViolations.push({
    kind: 'unexpected-answer',
    tx: typeof id === 'string' ? id : null,
    detail: `key ${key}: ${call.method} ${call.path} answered HTTP ${reply.status} ${reply.text.slice(0, 500)}`,
  });
}

/**
 * A call that decides the outcome (a one-shot begin, commit or abort),
 * repeated until it tells the client one. Returns null if the budget is
 * spent first.
 */
export async function decide(
  client: Client,
  key: string,
  kind: 'commit' | 'abort',
  call: Call,
  budget: Budget,
): Promise<{ told: Told; status: number; id: string } | null> {
  while (!budget.spent) {
    const reply = await callUntilAnswered(client, call, budget);
    if (reply === null) return null;
    const told = toldBy(kind, reply);
    const id = transactionOf(reply)?.id;
    if (typeof id === 'string') budget.idsSeen.add(id);
    if (told !== null) return { told, status: reply.status, id };
    unexpected(client, key, call, reply);
    await sleep(client.rng.between([20, 100]));
  }
  return null;
}

/** The record of a logical transaction, decided or given up. */
export function recordOf(
  key: string,
  flow: string,
  budget: Budget,
  decided: { told: Told; status: number; id: string } | null,
): ClientRecord {
  return {
    key,
    flow,
    answer: decided?.status ?? 'gave-up',
    told: decided?.told ?? null,
    txId: decided?.id ?? null,
    attempts: budget.attempts,
    idsSeen: [...budget.idsSeen],
  };
}

/** A one-shot commit (POST /v1/transactions with commit: true and an idempotency key) until it is decided. */
export async function oneShot(client: Client, key: string, body: object): Promise<ClientRecord> {
  const budget = new Budget();
  const call: Call = {
    method: 'POST',
    path: '/v1/transactions',
    body: JSON.stringify({ ...body, commit: true, idempotencyKey: key }),
  };
  return recordOf(key, 'one-shot', budget, await decide(client, key, 'commit', call, budget));
}
