// Signatures on commitd's calls to participants (docs/protocol.md,
// "Signatures"): HMAC-SHA256 over a string that binds the message to its
// action and transaction, so a captured abort cannot be replayed as a commit
// nor one transaction's message as another's; a secret per participant origin
// keeps one participant from forging messages to the others.

import { createHmac } from 'node:crypto';
import { MIN_SECRET_LENGTH } from '../security/tokens.js';

export const SIGNATURE_VERSION = 'v1';

export interface SignedParts {
  /** Milliseconds since the Unix epoch, decimal. */
  readonly timestamp: string;
  /** Upper-case HTTP method. */
  readonly method: string;
  /** The request path as sent on the request line, without a query string. */
  readonly path: string;
  readonly transactionId: string;
  /** The raw request body. */
  readonly body: string;
}

/** S = "v1\n" + timestamp + "\n" + METHOD + "\n" + path + "\n" + transactionId + "\n" + body */
export function signingString(p: SignedParts): string {
  return `${SIGNATURE_VERSION}\n${p.timestamp}\n${p.method.toUpperCase()}\n${p.path}\n${p.transactionId}\n${p.body}`;
}

/** The value of x-commitd-signature: `v1=<lowercase hex HMAC-SHA256(secret, S)>`. */
export function signature(secret: string, p: SignedParts): string {
  return `${SIGNATURE_VERSION}=${createHmac('sha256', secret).update(signingString(p), 'utf8').digest('hex')}`;
}

export class SecretFormatError extends Error {
  override name = 'SecretFormatError';
}

/**
 * COMMITD_PARTICIPANT_SECRETS: `origin=secret` entries. The origin is
 * normalised (https://PAY.internal:443 and https://pay.internal are one).
 * Errors name the entry's position and origin, never its secret.
 */
export function parseParticipantSecrets(entries: readonly string[]): Map<string, string> {
  const secrets = new Map<string, string>();
  entries.forEach((raw, index) => {
    const where = `entry ${index + 1}`;
    // An origin has no '=', so the first one ends it; the secret may hold more.
    const eq = raw.indexOf('=');
    if (eq < 0) throw new SecretFormatError(`${where} must be origin=secret`);
    const originText = raw.slice(0, eq).trim();
    const secret = raw.slice(eq + 1);
    let url: URL;
    try {
      url = new URL(originText);
    } catch {
      throw new SecretFormatError(`${where}: '${originText.slice(0, 200)}' is not an origin`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.username || url.search) {
      throw new SecretFormatError(`${where}: '${originText.slice(0, 200)}' must be an origin, scheme://host[:port]`);
    }
    if (secret.length < MIN_SECRET_LENGTH)
      throw new SecretFormatError(
        `${where} (${url.origin}): a secret must be at least ${MIN_SECRET_LENGTH} characters`,
      );
    if (secrets.has(url.origin)) throw new SecretFormatError(`${where}: ${url.origin} is listed twice`);
    secrets.set(url.origin, secret);
  });
  return secrets;
}
