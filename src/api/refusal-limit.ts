// Refused calls per second per client address, counted before anything
// else looks at a request. The per-token limit (rate-limit.ts) runs once a
// token is known, so calls refused on the way there (401 for a guessed
// token, 403, 404 for a guessed transaction id) and what no route limits
// (the /docs pages, a path that matches nothing) would otherwise cost an
// attacker nothing: token guessing and id probing at line rate. Each such
// answer counts against the caller's address; an address past the limit in
// this second is answered 429 before authentication, whatever it sends.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { problem, sendProblem } from './problems.js';

/** Addresses tracked at once; beyond it the oldest window is forgotten. */
const TRACKED_ADDRESSES_MAX = 10_000;
const WINDOW_MS = 1_000;
/** Answers that count: refused, or answered without a route's own limit. */
const COUNTED_STATUSES = new Set([401, 403, 404]);

interface Window {
  startMs: number;
  count: number;
}

export function installRefusalLimit(app: FastifyInstance, perSecond: number, nowMs = Date.now): void {
  const windows = new Map<string, Window>();
  const current = (address: string): Window => {
    const now = nowMs();
    let w = windows.get(address);
    if (w === undefined || now - w.startMs >= WINDOW_MS) {
      // Re-inserted: the map's order is the age of each window, oldest first.
      windows.delete(address);
      if (windows.size >= TRACKED_ADDRESSES_MAX) windows.delete(windows.keys().next().value as string);
      w = { startMs: now, count: 0 };
      windows.set(address, w);
    }
    return w;
  };

  app.addHook('onRequest', (request, reply, done) => {
    if (isProbe(request)) return done();
    const w = windows.get(request.ip);
    if (w === undefined || nowMs() - w.startMs >= WINDOW_MS || w.count < perSecond) return done();
    reply.header('retry-after', '1');
    sendProblem(
      reply,
      problem(
        'rate-limited',
        429,
        `more than ${perSecond} refused requests per second from this address; retry in 1 second`,
      ),
    );
  });

  app.addHook('onResponse', (request, reply, done) => {
    if (COUNTED_STATUSES.has(reply.statusCode) || request.routeOptions.url?.startsWith('/docs')) {
      current(request.ip).count++;
    }
    done();
  });
}

/** An orchestrator's probes are never refused for someone else's traffic. */
function isProbe(request: FastifyRequest): boolean {
  return request.url === '/healthz' || request.url === '/readyz';
}
