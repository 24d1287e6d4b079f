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
