// RFC 9457 problem details: every error commitd answers has this shape.

import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ConflictError, LimitError, NotFoundError, UnavailableError } from '../coordinator/errors.js';

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  [extra: string]: unknown;
}

const TITLES: Record<string, string> = {
  'invalid-request': 'The request is not valid',
  'malformed-json': 'The body is not valid JSON',
  unauthorized: 'Authentication required',
  forbidden: 'Not allowed',
  'participant-url-refused': 'The participant URL is refused',
  'rate-limited': 'Too many requests',
  'not-found': 'Not found',
  'unsupported-media-type': 'Unsupported media type',
  'too-large': 'Too large',
  conflict: 'Conflict with the transaction',
  'transaction-aborted': 'The transaction was aborted',
  'transaction-committed': 'The transaction has a commit decision',
  'transaction-not-active': 'The transaction is not active',
  'idempotency-key-reused': 'Idempotency key reused for another request',
  'limit-exceeded': 'A configured limit was exceeded',
  'outcome-pending': 'The transaction is not decided yet',
  'transaction-not-decided': 'The transaction is not decided: there is no phase two to retry',
  'nothing-to-resolve': 'No unresolved heuristic outcome',
  unavailable: 'Service unavailable',
  internal: 'Internal error',
};

export function problem(slug: keyof typeof TITLES | string, status: number, detail: string, extra = {}): Problem {
  return { type: `urn:commitd:problem:${slug}`, title: TITLES[slug] ?? slug, status, detail, ...extra };
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type(PROBLEM_TYPE).send(p);
}

/**
 * May this caller read what commitd's own failures say (peer addresses, a
 * store's or a peer's network errors)? Admin tokens, and every caller of a
 * commitd without tokens (loopback only, or insecure by choice); a client
 * or participant token reads what kind of failure it was, not its detail.
 */
export function seesInternals(request: FastifyRequest): boolean {
  return request.identity === null || request.identity.role === 'admin';
}

/** A caller's mistake, raised from a handler: answered as a problem, never logged as an error. */
export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

export function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof ProblemError) return sendProblem(reply, error.problem);
  if (error.validation) {
    return sendProblem(
      reply,
      problem('invalid-request', 400, error.message, {
        errors: error.validation.map((v) => ({ path: v.instancePath || '/', message: v.message ?? 'invalid' })),
      }),
    );
  }
  if (error instanceof NotFoundError) return sendProblem(reply, problem('not-found', 404, error.message));
  if (error instanceof ConflictError) return sendProblem(reply, problem('idempotency-key-reused', 409, error.message));
  if (error instanceof LimitError) return sendProblem(reply, problem('limit-exceeded', 400, error.message));
  if (error instanceof UnavailableError) {
    reply.header('retry-after', String(error.retryAfterS));
    if (error.publicMessage !== null && !seesInternals(request)) {
      request.log.warn({ err: error }, 'unavailable');
      return sendProblem(reply, problem('unavailable', 503, error.publicMessage));
    }
    return sendProblem(reply, problem('unavailable', 503, error.message));
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return sendProblem(reply, problem('too-large', 413, error.message));
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return sendProblem(reply, problem('unsupported-media-type', 415, 'send JSON with content-type application/json'));
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return sendProblem(reply, problem('invalid-request', 400, error.message));
  }
  if (error instanceof SyntaxError || (error.statusCode === 400 && /JSON/i.test(error.message))) {
    return sendProblem(reply, problem('malformed-json', 400, error.message));
  }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return sendProblem(reply, problem('invalid-request', error.statusCode, error.message));
  }
  request.log.error({ err: error }, 'request failed');
  return sendProblem(reply, problem('internal', 500, 'commitd failed to handle the request; see its log'));
}
