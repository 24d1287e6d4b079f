// Who made a call, as the coordinator records it in a transaction's history:
// the token's role and id (never the token) and the caller's address. An
// admin's abort or retry is an operator's action.

import type { FastifyRequest } from 'fastify';
import type { CallContext } from '../coordinator/contract.js';
import type { Actor } from '../protocol/history.js';

export function actorOf(request: FastifyRequest): Actor {
  return { role: request.identity?.role ?? null, tokenId: request.identity?.tokenId ?? null, address: request.ip };
}

export function callContext(request: FastifyRequest): CallContext {
  return { by: actorOf(request), operator: request.identity?.role === 'admin' };
}
