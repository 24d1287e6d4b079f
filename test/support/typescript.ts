// tsc over a consumer's files, as a TypeScript user of the package compiles
// them: strict, NodeNext resolution (through `exports`), Node's types from
// this repository's node_modules.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';

/**
 * Writes dir/tsconfig.json for `files` and type-checks them (and, with
 * `outDir`, compiles them there); answers tsc's status and output.
 */
export function typeCheckStrict(
  dir: string,
  files: readonly string[],
  outDir: string | null = null,
): { status: number | null; output: string } {
  const tsconfig = path.join(dir, 'tsconfig.json');
  fs.writeFileSync(
    tsconfig,
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        ...(outDir === null ? { noEmit: true } : { outDir }),
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [path.join(PACKAGE_ROOT, 'node_modules', '@types')],
      },
      files,
    }),
  );
  const tsc = path.join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', tsconfig], { cwd: dir, encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}${r.error ? `\n${r.error.message}` : ''}` };
}
