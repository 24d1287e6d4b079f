// The service's packages that an install of commitd as a library may lack.
// better-sqlite3, fastify and pg are optional peer dependencies of the
// package, so an app that only uses commitd/client or commitd/participant
// neither compiles better-sqlite3 nor downloads fastify; the service itself
// needs them (this repository's `npm ci` and the container image install
// them). The entry point checks them before loading any module that imports
// them, so a missing one is named with the command that installs it instead
// of surfacing as a module resolution error from deep inside.

import fs from 'node:fs';
import path from 'node:path';
import { type Config, PACKAGE_ROOT } from './config.js';

interface Manifest {
  readonly peerDependencies?: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
}

/** The peers this configuration loads: the API and the decision log always, pg for PostgreSQL databases. */
export function peersNeeded(config: Pick<Config, 'databases'>): string[] {
  const needed = ['fastify', 'better-sqlite3'];
  if (config.databases.some((d) => d.kind === 'postgres')) needed.push('pg');
  return needed;
}

/** Why the service cannot start, naming what to install; null when every needed peer resolves. */
export function missingPeersProblem(needed: readonly string[]): string | null {
  const missing = needed.filter((name) => !resolves(name));
  if (missing.length === 0) return null;
  const manifest = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as Manifest;
  // The range this repository tests the service with, else the peer range.
  const specs = missing.map((name) => {
    const range = manifest.devDependencies?.[name] ?? manifest.peerDependencies?.[name];
    return range === undefined ? name : `'${name}@${range}'`;
  });
  return (
    `the service needs ${missing.join(', ')}, not installed: optional peer dependencies of the commitd ` +
    `package, which its library entry points do not load. Install them next to commitd: npm install ${specs.join(' ')}`
  );
}

function resolves(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch {
    return false;
  }
}
