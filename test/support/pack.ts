// `npm pack` of this repository as it is built (the build is `npm test`'s
// first step; packing must not rebuild), into a temporary directory.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from './harness.js';

export interface Packed {
  readonly tarball: string;
  /** The tarball's files, paths relative to the package. */
  readonly files: readonly string[];
  remove(): void;
}

export function packTarball(): Packed {
  const packDir = tempDir('commitd-pack-');
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], {
      cwd: PACKAGE_ROOT,
      encoding: 'utf8',
    }),
  );
  return {
    tarball: path.join(packDir, packed[0].filename as string),
    files: packed[0].files.map((f: { path: string }) => f.path),
    remove: () => fs.rmSync(packDir, { recursive: true, force: true }),
  };
}
