// Name resolution for participant connections that checks every address a
// name resolves to, when the connection is made: a participant URL that
// passed the policy with a name can still resolve to a link-local or other
// refused address later (DNS rebinding). Such a connection fails before it is
// attempted, and the call fails like any unreachable participant.

import dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import { addressRule } from './url-policy.js';

export type Resolver = typeof dns.lookup;

export class AddressRefusedError extends Error {
  override name = 'AddressRefusedError';
}

/** `internal`: loopback and private addresses are refused too (commitd exposed with no allowlist). */
export function checkedLookup(resolve: Resolver = dns.lookup, internal = false): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, options, (error, address, family) => {
      if (error) return callback(error, address as string, family);
      const all = Array.isArray(address) ? address : [{ address, family: family ?? 4 }];
      for (const a of all) {
        const rule = addressRule(a.address, internal);
        if (rule !== null) {
          return callback(
            new AddressRefusedError(`${hostname} resolves to a ${rule} address, refused`),
            address as string,
            family,
          );
        }
      }
      callback(null, address as string, family);
    });
  };
}
