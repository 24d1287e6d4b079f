// The outcome inquiry (participant → commitd): GET
// /v1/transactions/{id}/outcome answers commit, abort, pending or forgotten
// (docs/protocol.md). Bounded in
// time and size; any other answer is an error the caller retries later.

import { request } from 'undici';

const INQUIRY_TIMEOUT_MS = 5000;
const MAX_ANSWER_BYTES = 4096;

export async function inquireOutcome(
  coordinatorUrl: string,
  transactionId: string,
  token: string | null,
  timeoutMs = INQUIRY_TIMEOUT_MS,
): Promise<'commit' | 'abort' | 'pending' | 'forgotten'> {
  const url = `${coordinatorUrl.replace(/\/+$/, '')}/v1/transactions/${encodeURIComponent(transactionId)}/outcome`;
  const res = await request(url, {
    method: 'GET',
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  });
  let text = '';
  for await (const chunk of res.body) {
    text += chunk;
    if (text.length > MAX_ANSWER_BYTES) {
      res.body.destroy();
      throw new Error('the outcome answer is over its size limit');
    }
  }
  if (res.statusCode !== 200) throw new Error(`the outcome inquiry answered HTTP ${res.statusCode}`);
  const outcome = (JSON.parse(text) as { outcome?: unknown }).outcome;
  if (outcome !== 'commit' && outcome !== 'abort' && outcome !== 'pending' && outcome !== 'forgotten') {
    throw new Error(`the outcome inquiry answered ${JSON.stringify(outcome)}`);
  }
  return outcome;
}
