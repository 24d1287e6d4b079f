// Certificate and key files named in the configuration, read once at start.
// A file that cannot be read, or does not hold PEM, stops commitd with a
// configuration error naming the setting (exit 2), never with its contents.

import fs from 'node:fs';
import tls from 'node:tls';
import { ConfigError } from '../config.js';

export function readPem(file: string | null, setting: string): string | null {
  if (file === null) return null;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`${setting}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) throw new ConfigError(`${setting}: ${file} holds no PEM block`);
  return text;
}

/**
 * undici's connect option that trusts the system's CAs plus `ca` (a PEM
 * file's text), or nothing to add when there is none: a private CA is
 * added to the trusted ones, never put in their place.
 */
export function trustingAlso(ca: string | null): { ca: string[] } | Record<string, never> {
  return ca === null ? {} : { ca: [...tls.rootCertificates, ca] };
}

/** Both of a certificate and its key, or neither. */
export function readPair(
  certFile: string | null,
  keyFile: string | null,
  certSetting: string,
  keySetting: string,
): { cert: string; key: string } | null {
  if ((certFile === null) !== (keyFile === null)) {
    throw new ConfigError(`${certSetting} and ${keySetting} are set together or not at all`);
  }
  const cert = readPem(certFile, certSetting);
  const key = readPem(keyFile, keySetting);
  return cert !== null && key !== null ? { cert, key } : null;
}
