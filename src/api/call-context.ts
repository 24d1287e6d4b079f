// Who made a call, as the coordinator records it in a transaction's history:
// the token's role and id (never the token) and the caller's address. An
// admin's abort or retry is an operator's action. And the trace it came in.
// And what the caller may reach: a client token only the transactions it
// began (another's answers as an unknown id does, so its existence does not
// leak), a bound participant token only those it takes part in (403).

import type { FastifyRequest } from 'fastify';
import type { CallContext } from '../coordinator/contract.js';
import type { Actor } from '../protocol/history.js';
import type { Transaction } from '../protocol/types.js';
import { normalizeTraceParent } from '../tracing/traceparent.js';
import { ProblemError, problem } from './problems.js';

export function actorOf(request: FastifyRequest): Actor {
  return { role: request.identity?.role ?? null, tokenId: request.identity?.tokenId ?? null, address: request.ip };
}

export function callContext(request: FastifyRequest): CallContext {
  return {
    by: actorOf(request),
    operator: request.identity?.role === 'admin',
    onlyBegunBy: request.identity?.role === 'client' ? request.identity.tokenId : null,
    traceParent: traceParentOf(request),
  };
}

/**
 * A bound participant token reads and inquires only about transactions one
 * of its names takes part in: 403 otherwise (it knows the id; what it may
 * not do is read as someone else).
 */
export function checkParticipantReach(request: FastifyRequest, tx: Transaction | null): void {
  const names = request.identity?.names ?? null;
  if (names === null || tx === null) return;
  if (tx.participants.some((p) => names.includes(p.name))) return;
  throw new ProblemError(
    problem('forbidden', 403, `this token speaks for ${names.join(', ')}, which take no part in the transaction`),
  );
}

/** A bound participant token enlists only under its names: 403 otherwise. */
export function checkParticipantName(request: FastifyRequest, name: string): void {
  const names = request.identity?.names ?? null;
  if (names === null || names.includes(name)) return;
  throw new ProblemError(
    problem('forbidden', 403, `this token speaks for ${names.join(', ')}, not for '${name.slice(0, 128)}'`),
  );
}

/**
 * The call's W3C traceparent, or null: one that is not valid is ignored, as
 * the spec asks, never refused (docs/protocol.md, "Traces").
 */
export function traceParentOf(request: FastifyRequest): string | null {
  return normalizeTraceParent(request.headers.traceparent);
}
