// Who made a call, as the coordinator records it in a transaction's history:
// the token's role and id (never the token) and the caller's address. An
// admin's abort or retry is an operator's action. And the trace it came in.

import type { FastifyRequest } from 'fastify';
import type { CallContext } from '../coordinator/contract.js';
import type { Actor } from '../protocol/history.js';
import { normalizeTraceParent } from '../tracing/traceparent.js';

export function actorOf(request: FastifyRequest): Actor {
  return { role: request.identity?.role ?? null, tokenId: request.identity?.tokenId ?? null, address: request.ip };
}

export function callContext(request: FastifyRequest): CallContext {
  return {
    by: actorOf(request),
    operator: request.identity?.role === 'admin',
    traceParent: traceParentOf(request),
  };
}

/**
 * The call's W3C traceparent, or null: one that is not valid is ignored, as
 * the spec asks, never refused (docs/protocol.md, "Traces").
 */
export function traceParentOf(request: FastifyRequest): string | null {
  return normalizeTraceParent(request.headers.traceparent);
}
