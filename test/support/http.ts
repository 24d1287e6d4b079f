// A small JSON client for tests that talk to a real commitd over HTTP.

import { request } from 'undici';

export interface JsonResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: any;
}

export async function call(base: string, method: string, path: string, body?: unknown): Promise<JsonResponse> {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** Polls a commitd's GET until the transaction is finished at every participant (bounded); returns its view. */
export async function settled(base: string, id: string, timeoutMs = 20_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tx = (await call(base, 'GET', `/v1/transactions/${id}`)).body;
    if (tx.state === 'committed' || tx.state === 'aborted') return tx;
    if (Date.now() > deadline) throw new Error(`transaction ${id} did not settle: ${JSON.stringify(tx)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A call retried while it answers 503 (the contract's "retry": commitd
 * starting, or with several instances a transaction whose shard is still
 * changing owner, as right after a restart on PostgreSQL), bounded.
 */
export async function callRetrying(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 15_000,
): Promise<JsonResponse> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await call(base, method, path, body);
    if (res.status !== 503 || Date.now() > deadline) return res;
    await new Promise((r) => setTimeout(r, 100));
  }
}
