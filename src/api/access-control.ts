// Access control at the door, as fastify hooks: readiness gating, bearer
// tokens with roles, the browser Origin check, the loopback Host check of a
// token-less commitd, and the log of refusals and of every client and
// operator action. Each decision is made on the route the router chose
// (request.routeOptions.url), never on the raw URL.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { accessFor, actionName, isLoopbackHost, isMutating, originAllowed } from '../security/access.js';
import { type Identity, identify, parseTokens } from '../security/tokens.js';
import { parseTraceParent } from '../tracing/traceparent.js';
import { problem, sendProblem } from './problems.js';
import type { Readiness } from './readiness.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who called, once a token was recognised; null without tokens configured. */
    identity: Identity | null;
  }
}

export function installAccessControl(app: FastifyInstance, config: Config, readiness: Readiness): void {
  const tokens = parseTokens(config.server.tokens, config.server.authToken);
  const protectOperations = config.server.protectOperations;
  const allowedOrigins = config.server.allowedOrigins;
  // Without tokens commitd is loopback-only (or explicitly insecure); a Host
  // other than a loopback name then means a web page rebound its own name to
  // 127.0.0.1 to reach it (DNS rebinding).
  const requireLoopbackHost = tokens.length === 0 && !config.server.insecure;

  app.decorateRequest('identity', null);

  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url;
    const isApi = route?.startsWith('/v1/') ?? false;
    if (isApi && !readiness.ready) {
      reply.header('retry-after', '1');
      return sendProblem(reply, problem('unavailable', 503, 'commitd is starting or stopping'));
    }
    const access = accessFor(request.method, route, protectOperations);
    if (access.kind === 'roles' && tokens.length > 0) {
      const header = request.headers.authorization;
      const presented = header !== undefined && /^Bearer /i.test(header) ? header.slice(7).trim() : null;
      if (presented === null || presented === '') {
        refusal(request, 'no token', null);
        reply.header('www-authenticate', 'Bearer realm="commitd"');
        return sendProblem(reply, problem('unauthorized', 401, 'send Authorization: Bearer <token>'));
      }
      const identity = identify(tokens, presented);
      if (identity === null) {
        refusal(request, 'unknown token', null);
        reply.header('www-authenticate', 'Bearer realm="commitd", error="invalid_token"');
        return sendProblem(reply, problem('unauthorized', 401, 'the token is not known'));
      }
      if (!access.roles.includes(identity.role)) {
        refusal(request, 'role not allowed', identity);
        return sendProblem(
          reply,
          problem('forbidden', 403, `a ${identity.role} token may not call ${request.method} ${route}`),
        );
      }
      request.identity = identity;
    }
    if (isApi && requireLoopbackHost && !isLoopbackHost(request.headers.host)) {
      refusal(request, 'non-loopback Host without tokens', null);
      return sendProblem(
        reply,
        problem(
          'forbidden',
          403,
          'without tokens commitd answers only to a loopback Host (localhost, 127.0.0.1, [::1])',
        ),
      );
    }
    const origin = request.headers.origin;
    if (origin !== undefined && route !== undefined && isMutating(request.method)) {
      const own = `${request.protocol}://${request.headers.host ?? ''}`;
      if (!originAllowed(origin, own, allowedOrigins)) {
        refusal(request, 'origin not allowed', request.identity);
        return sendProblem(
          reply,
          problem('forbidden', 403, `requests from the origin ${origin.slice(0, 200)} are not allowed`),
        );
      }
    }
  });

  // Who did what to which transaction: every state-changing call and every
  // list, with its answer. The token is named by its id, never itself.
  app.addHook('onResponse', async (request, reply) => {
    // Logged at info: at a quieter level the line is not built at all (its
    // fields cost more than the rest of the hook).
    if (!INFO_OR_MORE.has(request.log.level)) return;
    const action = actionName(request.method, request.routeOptions.url);
    // Refusals (401, 403) were logged as such in onRequest.
    if (action === null || reply.statusCode === 401 || reply.statusCode === 403) return;
    // The trace the call came in, when it came with a valid traceparent.
    const traceId =
      request.headers.traceparent === undefined ? null : parseTraceParent(request.headers.traceparent)?.traceId;
    request.log.info(
      {
        who: who(request),
        action,
        transaction: transactionOf(request, reply),
        ...(traceId ? { traceId } : {}),
        status: reply.statusCode,
      },
      'api action',
    );
  });
}

/** The log levels at which an action's line is written. */
const INFO_OR_MORE = new Set(['info', 'debug', 'trace']);

function refusal(request: FastifyRequest, reason: string, identity: Identity | null): void {
  request.log.warn(
    {
      refused: reason,
      method: request.method,
      route: request.routeOptions.url,
      address: request.ip,
      ...(identity ? { role: identity.role, token: identity.tokenId } : {}),
    },
    'request refused',
  );
}

function who(request: FastifyRequest): Record<string, string> {
  const id = request.identity;
  return id === null ? { address: request.ip } : { role: id.role, token: id.tokenId, address: request.ip };
}

function transactionOf(request: FastifyRequest, reply: FastifyReply): string | null {
  const params = request.params as { id?: unknown } | undefined;
  if (typeof params?.id === 'string') return params.id;
  const location = reply.getHeader('location');
  return typeof location === 'string' ? location.slice(location.lastIndexOf('/') + 1) : null;
}
