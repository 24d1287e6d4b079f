// Certificates for TLS tests, made with openssl in a temp directory: a CA,
// a server certificate for 127.0.0.1 signed by it, a client certificate
// signed by it, and a self-signed server certificate nobody trusts.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './harness.js';

export interface Certs {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly untrustedCert: string;
  readonly untrustedKey: string;
  /** File paths of the same, for settings that take files. */
  readonly files: Record<'caCert' | 'serverCert' | 'serverKey' | 'clientCert' | 'clientKey', string>;
  remove(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

export function makeCerts(): Certs {
  const dir = tempDir('commitd-certs-');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    dir,
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=commitd test CA',
  );
  const sign = (name: string, subject: string, ext: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, 'req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    openssl(
      dir,
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  sign('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  sign('client', '/CN=commitd', 'extendedKeyUsage=clientAuth\n');
  openssl(
    dir,
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'untrusted.key',
    '-out',
    'untrusted.crt',
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  );
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  const file = (f: string) => path.join(dir, f);
  return {
    dir,
    caCert: read('ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    untrustedCert: read('untrusted.crt'),
    untrustedKey: read('untrusted.key'),
    files: {
      caCert: file('ca.crt'),
      serverCert: file('server.crt'),
      serverKey: file('server.key'),
      clientCert: file('client.crt'),
      clientKey: file('client.key'),
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
