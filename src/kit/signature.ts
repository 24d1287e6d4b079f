// The v1 request signature commitd puts on its calls to participants, and its
// verifier. S = "v1\n" + timestamp + "\n" + METHOD + "\n" + path + "\n" +
// transactionId + "\n" + body, signed with HMAC-SHA256 and sent as
// `x-commitd-signature: v1=<hex>`, next to `x-commitd-timestamp` (ms since
// the epoch) and `x-commitd-transaction`. Binding the method, path and
// transaction id means a captured prepare cannot be replayed as a commit, to
// another endpoint, or for another transaction; the timestamp window bounds
// how long a captured call stays usable at all.

import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-commitd-signature';
export const TIMESTAMP_HEADER = 'x-commitd-timestamp';
export const TRANSACTION_HEADER = 'x-commitd-transaction';

/** Five minutes either way: clocks of two hosts rarely drift further, replays older than this are refused. */
export const DEFAULT_SIGNATURE_WINDOW_MS = 5 * 60_000;

export interface SignedRequest {
  readonly method: string;
  /** The request path as on the request line, without the query string. */
  readonly path: string;
  readonly transactionId: string;
  /** Milliseconds since the Unix epoch, decimal, as sent. */
  readonly timestamp: string;
  readonly body: Buffer | string;
}

/** The lowercase hex HMAC-SHA256 of the v1 string to sign. */
export function signV1(secret: string, request: SignedRequest): string {
  const head = `v1\n${request.timestamp}\n${request.method.toUpperCase()}\n${request.path}\n${request.transactionId}\n`;
  return createHmac('sha256', secret).update(head, 'utf8').update(request.body).digest('hex');
}

export interface VerifyInput {
  readonly method: string;
  readonly path: string;
  /** `x-commitd-transaction`, or undefined when absent. */
  readonly transactionId: string | undefined;
  readonly timestamp: string | undefined;
  readonly signature: string | undefined;
  readonly body: Buffer | string;
}

export interface VerifyOptions {
  /** One secret, or several while rotating: a signature by any of them is accepted. */
  readonly secrets: readonly string[];
  readonly windowMs?: number;
  readonly nowMs?: number;
}

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const TIMESTAMP = /^\d{1,16}$/;
const SIGNATURE = /^v1=([0-9a-f]{64})$/;

/** Checks a call's signature: present, well-formed, within the window, and made with one of the secrets. */
export function verifySignature(input: VerifyInput, options: VerifyOptions): Verdict {
  if (options.secrets.length === 0) return { ok: false, reason: 'no signing secret configured' };
  if (input.signature === undefined || input.timestamp === undefined || input.transactionId === undefined) {
    return { ok: false, reason: 'the call is not signed' };
  }
  if (!TIMESTAMP.test(input.timestamp)) return { ok: false, reason: 'the signature timestamp is malformed' };
  const windowMs = options.windowMs ?? DEFAULT_SIGNATURE_WINDOW_MS;
  const nowMs = options.nowMs ?? Date.now();
  if (Math.abs(nowMs - Number(input.timestamp)) > windowMs) {
    return { ok: false, reason: `the signature timestamp is more than ${windowMs} ms away from this host's clock` };
  }
  const match = SIGNATURE.exec(input.signature);
  if (match === null) return { ok: false, reason: 'the signature is not of the form v1=<64 hex digits>' };
  const given = Buffer.from(match[1] as string, 'hex');
  const request: SignedRequest = {
    method: input.method,
    path: input.path,
    transactionId: input.transactionId,
    timestamp: input.timestamp,
    body: input.body,
  };
  // Every secret is tried (no early exit), each compare in constant time.
  let matched = false;
  for (const secret of options.secrets) {
    const expected = Buffer.from(signV1(secret, request), 'hex');
    if (timingSafeEqual(expected, given)) matched = true;
  }
  return matched ? { ok: true } : { ok: false, reason: 'the signature does not match' };
}
