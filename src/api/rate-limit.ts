// Requests per second per caller, through @fastify/rate-limit (kept by the
// fastify team, fastify 5 support, a bounded in-memory LRU store): per token
// once access control has recognised one, per client address otherwise.
// Beyond the limit: 429, a problem document, with Retry-After. Must be
// installed after access control (its identity is the key) and before the
// routes it limits (the plugin attaches itself to routes as they are added).

import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import { ProblemError, problem } from './problems.js';

/** Callers tracked at once; the least recently seen is forgotten beyond it. */
const MAX_TRACKED_CALLERS = 10_000;

export async function installRateLimit(app: FastifyInstance, perSecond: number): Promise<void> {
  await app.register(rateLimit, {
    global: true,
    max: perSecond,
    timeWindow: 1000,
    cache: MAX_TRACKED_CALLERS,
    keyGenerator: (request) => (request.identity ? `token:${request.identity.tokenId}` : `address:${request.ip}`),
    // An orchestrator's probes are never refused for someone else's traffic.
    allowList: (request) => request.url === '/healthz' || request.url === '/readyz',
    errorResponseBuilder: (_request, context) =>
      new ProblemError(
        problem('rate-limited', 429, `more than ${context.max} requests per second; retry in ${context.after}`),
      ),
  });
}
