// What operators call (admin role, src/security/access.ts): a transaction's
// history, "retry now", resolving a heuristic outcome, and the overview's
// figures. Each action is logged by the access log, counted in
// commitd_operator_actions_total and recorded in the transaction's history.

import type { FastifyInstance } from 'fastify';
import type { Coordinator } from '../coordinator/coordinator.js';
import type { HistoryEntry } from '../protocol/history.js';
import type { Transaction } from '../protocol/types.js';
import { callContext } from './call-context.js';
import { problem, sendProblem } from './problems.js';
import { historySchema, resolveSchema, retrySchema, statsSchema } from './schemas.js';
import { iso, type TransactionView } from './view.js';

interface IdParams {
  id: string;
}

export function operatorRoutes(
  app: FastifyInstance,
  coordinator: Coordinator,
  transactionView: (tx: Transaction) => Promise<TransactionView>,
): void {
  app.get<{ Params: IdParams }>('/v1/transactions/:id/history', { schema: historySchema }, async (request) => {
    const entries = await coordinator.reads.history(request.params.id);
    return {
      transactionId: request.params.id,
      entries: entries.map(entryView),
      truncated: entries.some((e) => e.type === 'truncated'),
    };
  });

  app.post<{ Params: IdParams }>('/v1/transactions/:id/retry', { schema: retrySchema }, async (request, reply) => {
    const answer = await coordinator.retry(request.params.id, callContext(request));
    if (answer.refusal) {
      return sendProblem(
        reply,
        problem('transaction-not-decided', 409, answer.refusal.detail, {
          transaction: await transactionView(answer.tx),
        }),
      );
    }
    // Finished: nothing is owed to anyone. Otherwise the resends are on their way.
    return reply.code(answer.tx.finishedAtMs === null ? 202 : 200).send(await transactionView(answer.tx));
  });

  app.post<{ Params: IdParams; Body: { note: string; participant?: string } }>(
    '/v1/transactions/:id/resolve',
    { schema: resolveSchema },
    async (request, reply) => {
      const { id } = request.params;
      const participant = request.body.participant ?? null;
      const resolved = await coordinator.resolveHeuristics(id, participant, request.body.note, callContext(request));
      const tx = await coordinator.reads.get(id);
      if (resolved.length === 0) {
        const whose = participant === null ? '' : ` of participant '${participant}'`;
        return sendProblem(
          reply,
          problem('nothing-to-resolve', 409, `the transaction has no unresolved heuristic outcome${whose}`, {
            transaction: await transactionView(tx),
          }),
        );
      }
      return reply.code(200).send(await transactionView(tx));
    },
  );

  app.get('/v1/stats', { schema: statsSchema }, async () => {
    const stats = await coordinator.reads.stats();
    const oldest = stats.oldestUnfinished;
    return {
      inFlight: Object.fromEntries(stats.inFlight),
      decidedPerSecond: stats.decidedPerSecond,
      stuckParticipants: stats.stuckParticipants,
      unresolvedHeuristics: stats.unresolvedHeuristics,
      oldestUnfinished:
        oldest === null
          ? null
          : {
              id: oldest.id,
              state: oldest.state,
              createdAt: iso(oldest.createdAtMs),
              ageMs: Math.max(0, Date.now() - oldest.createdAtMs),
            },
      stuckAfterAttempts: stats.stuckAfterAttempts,
    };
  });
}

/** An entry as JSON: its time as ISO-8601, a caller as its token's id, role and address. */
function entryView(entry: HistoryEntry): Record<string, unknown> {
  const { atMs, ...fact } = entry;
  return { at: iso(atMs), ...fact };
}
