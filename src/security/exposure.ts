// Secure by default: a commitd without tokens serves only on a loopback
// address. Bound anywhere else without a token it refuses to start, unless
// the operator said COMMITD_INSECURE=true, and then it says so at every start.

import { isLoopbackName } from './access.js';

export type Exposure =
  | { readonly kind: 'ok' }
  | { readonly kind: 'refuse'; readonly message: string }
  | { readonly kind: 'warn'; readonly message: string };

export function exposure(host: string, tokenCount: number, insecure: boolean): Exposure {
  if (tokenCount > 0 || isLoopbackName(host)) return { kind: 'ok' };
  if (insecure) {
    return {
      kind: 'warn',
      message: `INSECURE: serving on ${host} with no token (COMMITD_INSECURE=true): anyone who can reach this address can begin, commit and abort transactions`,
    };
  }
  return {
    kind: 'refuse',
    message: `COMMITD_HOST is ${host}, not a loopback address, and no token is configured: set COMMITD_TOKENS (or COMMITD_AUTH_TOKEN), or COMMITD_INSECURE=true to serve without authentication`,
  };
}
