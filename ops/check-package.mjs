// Checks what `npm publish` would upload, before it does (CI runs this after
// `npm publish --dry-run`, which warns but never refuses): every file of the
// tarball must be one a user of the package needs, every file the package
// promises must be there, and the manifest must carry what a registry and a
// provenance statement read. Exits 1 naming each problem; prints the list of
// files otherwise. Run from the package's directory, after `npm run build`.
// Usage: node ops/check-package.mjs

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

// What a user of the package needs: the command, the compiled service, kit
// and client with their declarations, the console's static files, the
// default configuration, the runnable examples and the documentation.
const WANTED = [
  /^package\.json$/,
  /^README\.md$/,
  /^LICENSE$/,
  /^bin\/commitd\.js$/,
  /^config\/default\.yaml$/,
  /^dist\/src\/.+\.(js|d\.ts)$/,
  /^dist\/src\/console\/[^/]+\.(html|css|svg)$/,
  /^examples\/.+\.mjs$/,
  /^docs\/[^/]+\.md$/,
];
// Named so the refusal says why; every one of them is also outside WANTED.
const REFUSED = [
  [/^test\//, 'tests'],
  [/^bench\//, 'benchmarks'],
  [/^\.ci\//, 'CI scripts'],
  [/^ops\//, 'operations scripts'],
  [/^src\//, 'sources'],
  [/^dist\/(test|bench)\//, 'compiled tests or benchmarks'],
  [/(^|\/)(node_modules|data|coverage|\.tap)\//, 'local state'],
  [/\.map$/, 'source maps'],
  [/(^|\/)\.env|\.(db|db-wal|db-shm|log|tgz)$/, 'local files'],
];

const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8'));
const packed = JSON.parse(
  execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }),
);
const files = packed[0].files.map((f) => f.path).sort();
const problems = [];

for (const file of files) {
  const refused = REFUSED.find(([pattern]) => pattern.test(file));
  if (refused) problems.push(`${file}: ${refused[1]} do not belong in the package`);
  else if (!WANTED.some((pattern) => pattern.test(file))) problems.push(`${file}: not a file a user of the package needs`);
}

const required = new Set(['package.json', 'README.md', 'LICENSE', 'config/default.yaml']);
for (const target of [manifest.main, manifest.types, ...Object.values(manifest.bin ?? {})]) {
  if (typeof target === 'string') required.add(target.replace(/^\.\//, ''));
}
for (const entry of Object.values(manifest.exports ?? {})) {
  for (const target of typeof entry === 'string' ? [entry] : Object.values(entry)) required.add(target.replace(/^\.\//, ''));
}
for (const file of required) if (!files.includes(file)) problems.push(`${file}: missing (not built, or not in "files")`);

if (manifest.private) problems.push('package.json: "private": true, so it cannot be published');
for (const field of ['name', 'version', 'description', 'license']) {
  if (typeof manifest[field] !== 'string' || manifest[field] === '') problems.push(`package.json: no ${field}`);
}
// npm's provenance statement is checked against the repository it names.
if (typeof manifest.repository?.url !== 'string') problems.push('package.json: no repository.url');
if (typeof manifest.engines?.node !== 'string') problems.push('package.json: no engines.node');

if (problems.length > 0) {
  console.error(`the package is not ready to publish:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`${manifest.name}@${manifest.version}: ${files.length} files, each one a user needs`);
