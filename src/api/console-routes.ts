// The operator console (issue 12): a static page and its compiled scripts,
// served by commitd itself from memory. The files are built with the package
// (src/console, `npm run build`) and read once here, at start: nothing is
// built or read from disk while serving. The page carries no data, so its
// routes are open (security/access.ts); every call it makes sends the admin
// token the operator typed.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PACKAGE_ROOT } from '../config.js';
import { problem, sendProblem } from './problems.js';

/** Where `npm run build` puts the console's files. */
export const CONSOLE_DIR = path.join(PACKAGE_ROOT, 'dist', 'src', 'console');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Far more than the console's files; a directory that holds more is not the console's build. */
const CONSOLE_FILES_MAX = 64;
const CONSOLE_FILE_BYTES_MAX = 1024 * 1024;

/**
 * Scripts and styles from this origin only, no inline script, no framing,
 * no plugins; the page talks to this commitd alone.
 */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

export interface ConsoleFile {
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
}

/**
 * The console's files by name (index.html, console.css, icon.svg, the
 * compiled .js modules), or null when the package was not built with them.
 */
export function readConsoleFiles(dir: string = CONSOLE_DIR): Map<string, ConsoleFile> | null {
  if (!fs.existsSync(path.join(dir, 'index.html'))) return null;
  const files = new Map<string, ConsoleFile>();
  for (const name of fs.readdirSync(dir).sort()) {
    const contentType = CONTENT_TYPES[path.extname(name)];
    if (contentType === undefined) continue;
    if (files.size >= CONSOLE_FILES_MAX) throw new Error(`${dir} holds more than ${CONSOLE_FILES_MAX} files`);
    const body = fs.readFileSync(path.join(dir, name));
    if (body.length > CONSOLE_FILE_BYTES_MAX) throw new Error(`${path.join(dir, name)} is larger than 1 MiB`);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(name, { body, contentType, etag });
  }
  return files;
}

interface FileParams {
  file: string;
}

/**
 * GET /console (the page) and /console/<file> (its script modules and
 * style). Without a build (a checkout whose `npm run build` has not run) the
 * routes are not there and say so in a warning.
 */
export function consoleRoutes(app: FastifyInstance, files: Map<string, ConsoleFile> | null): void {
  if (files === null) {
    app.log.warn(`the operator console is not built (${CONSOLE_DIR} has no index.html): /console is not served`);
    return;
  }
  const page = files.get('index.html');
  if (page === undefined) return;
  const hidden = { schema: { hide: true } };
  app.get('/console', hidden, async (request, reply) => send(request, reply, page));
  app.get('/console/', hidden, async (request, reply) => send(request, reply, page));
  app.get<{ Params: FileParams }>('/console/:file', hidden, async (request, reply) => {
    const file = files.get(request.params.file);
    if (file === undefined) {
      return sendProblem(
        reply,
        problem('not-found', 404, `the console has no file ${request.params.file.slice(0, 100)}`),
      );
    }
    return send(request, reply, file);
  });
}

/**
 * What every page commitd serves carries, the console's and /docs alike: no
 * framing (clickjacking), no content-type sniffing, no referrer.
 */
export function pageHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer');
}

/** /docs: the page headers, and no framing said the CSP way too (Swagger UI's own scripts keep working). */
export const DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'";

function send(request: FastifyRequest, reply: FastifyReply, file: ConsoleFile): FastifyReply {
  pageHeaders(reply)
    .header('content-security-policy', CONSOLE_CSP)
    // The files change with a new build, not with time, and are not named by
    // their content: the browser keeps them but asks each time (a 304 costs
    // a few bytes), so an upgraded commitd never runs yesterday's script.
    .header('cache-control', 'no-cache')
    .header('etag', file.etag);
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  return reply.type(file.contentType).send(file.body);
}
