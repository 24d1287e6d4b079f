// Part of `npm run build`: the console's page, style and icon go next to its
// compiled scripts in dist/src/console, where commitd reads them at start
// (src/api/console-routes.ts). tsc compiles the .ts files; this copies the rest.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', '..', 'dist', 'src', 'console');
fs.mkdirSync(out, { recursive: true });
for (const name of fs.readdirSync(here)) {
  if (/\.(html|css|svg)$/.test(name)) fs.copyFileSync(path.join(here, name), path.join(out, name));
}
