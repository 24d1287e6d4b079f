// The client API and the participant inquiry (docs/protocol.md): a thin shell that
// checks what the schemas cannot, calls the coordinator and maps its answer
// to a status code.

import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config, DatabaseKind } from '../config.js';
import type { Answer, Coordinator } from '../coordinator/coordinator.js';
import { reachable } from '../coordinator/transaction-calls.js';
import type { ListPage } from '../log/decision-log.js';
import {
  nameProblem as participantNameProblem,
  postgresGid,
  xaXidText,
} from '../participants/databases/transaction-names.js';
import {
  checkParticipantUrl,
  OPEN_POLICY,
  parseAllowedPrefixes,
  type UrlPolicyContext,
} from '../participants/url-policy.js';
import { commitAnswer, mixedOutcome, prepareAnswer } from '../protocol/answers.js';
import { abortedDetail } from '../protocol/transitions.js';
import type { NewParticipant, Transaction, TxState } from '../protocol/types.js';
import { actorOf, callContext, checkParticipantName, checkParticipantReach, traceParentOf } from './call-context.js';
import { operatorRoutes } from './operator-routes.js';
import { ProblemError, problem, sendProblem } from './problems.js';
import { actionSchema, beginSchema, enlistSchema, getSchema, listSchema, outcomeSchema } from './schemas.js';
import { type TransactionView, transactionView as viewOf, type XidNamer } from './view.js';

type View = (tx: Transaction) => Promise<TransactionView>;

interface ParticipantBody {
  name: string;
  url?: string;
  database?: string;
  payload?: unknown;
}

interface BeginBody {
  participants?: ParticipantBody[];
  timeoutMs?: number;
  idempotencyKey?: string;
  metadata?: Record<string, unknown>;
  commit?: boolean;
}

interface IdParams {
  id: string;
}

export function transactionRoutes(
  app: FastifyInstance,
  coordinator: Coordinator,
  config: Config,
  deploymentId: string,
  urlPolicy?: UrlPolicyContext,
): void {
  const limits = config.transactions;
  // A database participant's view names its prepared transaction the way its
  // database's kind spells it.
  const kinds = new Map<string, DatabaseKind>(config.databases.map((d) => [d.name, d.kind]));
  const xidOf: XidNamer = (database, txId, name) => {
    const kind = kinds.get(database);
    if (kind === undefined) return null;
    return kind === 'postgres' ? postgresGid(deploymentId, txId, name) : xaXidText(deploymentId, txId, name);
  };
  // A heuristic an operator resolved shows its resolution (read only for
  // transactions that have a contradicting heuristic: the rare case).
  const transactionView: View = async (tx) =>
    viewOf(tx, xidOf, mixedOutcome(tx) ? await coordinator.reads.resolutions(tx.id) : undefined);
  // Validated at start (config.ts): parsing cannot fail here.
  const policy = urlPolicy ?? { ...OPEN_POLICY, allowed: parseAllowedPrefixes(config.participants.participantOrigins) };
  const newParticipant = (p: ParticipantBody) => checkParticipant(p, limits.maxPayloadBytes, kinds, policy);

  app.post<{ Body: BeginBody }>('/v1/transactions', { schema: beginSchema(config) }, async (request, reply) => {
    const body = request.body;
    const given = body.participants ?? [];
    const names = new Set<string>();
    for (const p of given) {
      if (names.has(p.name)) throw invalid(`participant name '${p.name}' appears twice`);
      names.add(p.name);
    }
    const participants = given.map(newParticipant);
    const metadataJson = body.metadata === undefined ? null : JSON.stringify(body.metadata);
    if (metadataJson !== null && Buffer.byteLength(metadataJson) > limits.maxMetadataBytes) {
      throw tooLarge(`metadata is larger than ${limits.maxMetadataBytes} bytes`);
    }
    const commit = body.commit === true;
    const idempotencyKey = body.idempotencyKey ?? null;
    const answer = await coordinator.begin({
      participants,
      timeoutMs: body.timeoutMs ?? null,
      idempotencyKey,
      // The token's id (a prefix of its SHA-256), never the token itself.
      idempotencyScope: request.identity?.tokenId ?? '',
      // A caller is its token, or its address without tokens.
      callerId: request.identity?.tokenId ?? request.ip,
      // What makes a retry the same request: everything but the key itself,
      // with defaults filled in, so that leaving out `commit` or `timeoutMs`
      // and sending their defaults are the same request.
      requestHash:
        idempotencyKey === null
          ? null
          : fingerprint({
              ...body,
              idempotencyKey: undefined,
              participants: given,
              timeoutMs: body.timeoutMs ?? limits.defaultTimeoutMs,
              commit,
            }),
      metadataJson,
      commit,
      by: actorOf(request),
      beganBy: request.identity?.tokenId ?? null,
      traceParent: traceParentOf(request),
    });
    reply.header('location', `/v1/transactions/${answer.tx.id}`);
    if (commit) return commitReply(reply, answer, transactionView);
    return reply.code(answer.created ? 201 : 200).send(await transactionView(answer.tx));
  });

  app.post<{ Params: IdParams; Body: ParticipantBody }>(
    '/v1/transactions/:id/participants',
    { schema: enlistSchema(config) },
    async (request, reply) => {
      checkParticipantName(request, request.body.name);
      const answer = await coordinator.enlist(request.params.id, newParticipant(request.body), callContext(request));
      if (answer.refusal) {
        const slug = answer.refusal.code === 'conflict' ? 'conflict' : 'transaction-not-active';
        return refused(reply, slug, answer, transactionView);
      }
      return reply.code(answer.created ? 201 : 200).send(await transactionView(answer.tx));
    },
  );

  app.post<{ Params: IdParams }>(
    '/v1/transactions/:id/prepare',
    { schema: actionSchema('Phase one only: ask every participant to prepare') },
    async (request, reply) => {
      const answer = await coordinator.prepare(request.params.id, callContext(request));
      switch (prepareAnswer(answer.tx, answer.refusal !== null)) {
        case 'aborted':
          return refused(reply, 'transaction-aborted', answer, transactionView);
        case 'undecided':
          return pending(reply, answer.tx, transactionView);
        case 'prepared':
          return reply.code(200).send(await transactionView(answer.tx));
      }
    },
  );

  app.post<{ Params: IdParams }>(
    '/v1/transactions/:id/commit',
    { schema: actionSchema('Prepare if needed, decide, and drive phase two') },
    async (request, reply) =>
      commitReply(reply, await coordinator.commit(request.params.id, callContext(request)), transactionView),
  );

  app.post<{ Params: IdParams }>(
    '/v1/transactions/:id/abort',
    { schema: actionSchema('Abort, unless a commit decision exists') },
    async (request, reply) => {
      const answer = await coordinator.abort(request.params.id, callContext(request));
      if (answer.refusal) return refused(reply, 'transaction-committed', answer, transactionView);
      return reply.code(200).send(await transactionView(answer.tx));
    },
  );

  app.get<{ Params: IdParams }>('/v1/transactions/:id', { schema: getSchema }, async (request) => {
    // Checked on what is read anyway (memory, or the one store read): no read of its own.
    const tx = reachable(await coordinator.reads.get(request.params.id), callContext(request));
    checkParticipantReach(request, tx);
    return await transactionView(tx);
  });

  app.get<{ Params: IdParams }>('/v1/transactions/:id/outcome', { schema: outcomeSchema }, async (request) => {
    // Only a bound token pays for the read; an unknown id is presumed
    // aborted for everyone, which tells nothing.
    if (request.identity?.names) checkParticipantReach(request, await coordinator.reads.find(request.params.id));
    return { outcome: await coordinator.reads.outcome(request.params.id) };
  });

  app.get<{ Querystring: ListParams }>('/v1/transactions', { schema: listSchema(config) }, async (request, reply) => {
    const q = request.query;
    const limit = q.limit === undefined ? limits.listLimitDefault : Number(q.limit);
    if (limit < 1 || limit > limits.listLimitMax) throw invalid(`limit must be from 1 to ${limits.listLimitMax}`);
    const page = await coordinator.reads.list({
      state: q.state ?? null,
      limit,
      after: q.after ?? null,
      stuck: q.stuck === 'true',
      heuristicUnresolved: q.heuristic === 'unresolved',
      createdBeforeMs: q.olderThanMs === undefined ? null : Date.now() - Number(q.olderThanMs),
      participant: q.participant ?? null,
    });
    return reply.type('application/json').send(await listPage(page, limits.listPageMaxBytes, transactionView));
  });

  operatorRoutes(app, coordinator, transactionView);
}

interface ListParams {
  state?: TxState;
  limit?: string;
  after?: string;
  stuck?: 'true' | 'false';
  heuristic?: 'unresolved';
  olderThanMs?: string;
  participant?: string;
}

/**
 * The list's JSON, at most `maxBytes` of transactions: the page stops before
 * the transaction that would pass the budget (the first always fits, so a
 * page is never empty while more exist) and `next` continues after the last
 * one sent. Built as text here, each transaction serialised once, so the
 * budget is exact and the answer is not serialised a second time.
 */
export async function listPage(page: ListPage, maxBytes: number, transactionView: View): Promise<string> {
  const parts: string[] = [];
  let bytes = 0;
  let next = page.next;
  for (const [i, tx] of page.transactions.entries()) {
    const json = JSON.stringify(await transactionView(tx));
    const size = Buffer.byteLength(json);
    if (i > 0 && bytes + size > maxBytes) {
      next = page.transactions[i - 1]?.id ?? next;
      break;
    }
    parts.push(json);
    bytes += size + 1;
  }
  return `{"transactions":[${parts.join(',')}],"next":${JSON.stringify(next)}}`;
}

async function commitReply(reply: FastifyReply, answer: Answer, transactionView: View): Promise<FastifyReply> {
  switch (commitAnswer(answer.tx, answer.refusal !== null)) {
    case 'aborted':
      return refused(reply, 'transaction-aborted', answer, transactionView);
    case 'undecided':
      return pending(reply, answer.tx, transactionView);
    case 'commit-decided':
      // The commit is decided and on disk; some participant has not acknowledged yet.
      return reply.code(202).send(await transactionView(answer.tx));
    case 'committed':
      return reply.code(200).send(await transactionView(answer.tx));
  }
}

/**
 * The call waited as long as it may and nothing is decided yet (participants
 * slower than their timeouts, a log slow to write). A 202 would promise a
 * commit that may never come: say what is true, and that asking again (the
 * same call, or GET) is safe.
 */
async function pending(reply: FastifyReply, tx: Transaction, transactionView: View): Promise<FastifyReply> {
  reply.header('retry-after', '1');
  return sendProblem(
    reply,
    problem(
      'outcome-pending',
      503,
      `the transaction is ${tx.state} and not decided yet; repeat the call or read it later`,
      { transaction: await transactionView(tx) },
    ),
  );
}

async function refused(
  reply: FastifyReply,
  slug: string,
  answer: Answer,
  transactionView: View,
): Promise<FastifyReply> {
  const detail = answer.refusal?.detail ?? abortedDetail(answer.tx);
  return sendProblem(reply, problem(slug, 409, detail, { transaction: await transactionView(answer.tx) }));
}

/** A transaction id is `tx_` and 26 characters (coordinator/ids.ts): the longest a gid must hold. */
const TX_ID_BYTES = 29;

function checkParticipant(
  p: ParticipantBody,
  maxPayloadBytes: number,
  databases: ReadonlyMap<string, DatabaseKind>,
  policy: UrlPolicyContext,
): NewParticipant {
  if (p.url !== undefined && p.database !== undefined) {
    throw invalid(`participant '${p.name}' names both a url and a database: it is one or the other`);
  }
  if (p.database !== undefined) {
    const kind = databases.get(p.database);
    if (kind === undefined) throw invalid(`participant '${p.name}': database '${p.database}' is not configured`);
    const nameProblem = participantNameProblem(kind, TX_ID_BYTES, p.name);
    if (nameProblem !== null) throw invalid(`participant '${p.name}': ${nameProblem}`);
    // The service did its work before preparing: there is nothing to hand over.
    if (p.payload !== undefined)
      throw invalid(`participant '${p.name}' is a database participant: it takes no payload`);
    return { name: p.name, url: null, database: p.database, payloadJson: null };
  }
  if (p.url === undefined) throw invalid(`participant '${p.name}' needs a url or a database`);
  const verdict = checkParticipantUrl(p.url, policy);
  if (!verdict.ok) {
    throw new ProblemError(
      problem('participant-url-refused', 400, `participant '${p.name}' url ${verdict.detail}`, { rule: verdict.rule }),
    );
  }
  const payloadJson = p.payload === undefined ? null : JSON.stringify(p.payload);
  if (payloadJson !== null && Buffer.byteLength(payloadJson) > maxPayloadBytes) {
    throw tooLarge(`participant '${p.name}' payload is larger than ${maxPayloadBytes} bytes`);
  }
  return { name: p.name, url: p.url, database: null, payloadJson };
}

function invalid(detail: string): ProblemError {
  return new ProblemError(problem('invalid-request', 400, detail));
}

function tooLarge(detail: string): ProblemError {
  return new ProblemError(problem('too-large', 413, detail));
}

/** SHA-256 of the JSON with object keys sorted, so a retry with reordered keys is still the same request. */
function fingerprint(value: unknown): string {
  return createHash('sha256').update(stableJson(value)).digest('hex');
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
