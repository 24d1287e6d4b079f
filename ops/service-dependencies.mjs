// Turns this directory's package.json into the service's: its optional peer
// dependencies become dependencies, at the range the lockfile was resolved
// for (devDependencies), so `npm prune --omit=dev` or `npm ci --omit=dev`
// keeps them. The package lists better-sqlite3, fastify and pg as optional
// peers so that an app installing commitd for its client or participant kit
// does not compile or download them; the service itself needs them. Run by
// the Dockerfile's build stage; nothing else should commit its result.

import fs from 'node:fs';

const file = 'package.json';
const manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
const dependencies = { ...manifest.dependencies };
const devDependencies = { ...manifest.devDependencies };
for (const name of Object.keys(manifest.peerDependencies ?? {})) {
  const range = devDependencies[name];
  if (range === undefined) {
    console.error(`${file}: the peer dependency ${name} has no devDependencies entry to take its version from`);
    process.exit(1);
  }
  dependencies[name] = range;
  delete devDependencies[name];
}
manifest.dependencies = Object.fromEntries(Object.entries(dependencies).sort(([a], [b]) => a.localeCompare(b)));
manifest.devDependencies = devDependencies;
delete manifest.peerDependencies;
delete manifest.peerDependenciesMeta;
fs.writeFileSync(file, `${JSON.stringify(manifest, null, 2)}\n`);
