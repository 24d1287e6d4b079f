// Several instances on one store: a call for a transaction another instance
// drives is passed to that instance (its advertised URL) and its answer
// passed back as it is, so a load balancer may send any call anywhere. The
// caller's own checks ran here already (token, origin, schema); the owner
// checks the token again, so every instance must share the tokens.
//
// One hop only: a call that arrives forwarded and is not the receiver's
// either (ownership moved on meanwhile) is answered 503 with Retry-After, and
// the caller's retry finds the new owner.

import type { FastifyReply, FastifyRequest } from 'fastify';
import { Agent, request as send } from 'undici';
import type { ElsewhereError } from '../coordinator/errors.js';
import type { Metrics } from '../metrics.js';
import { trustingAlso } from '../security/pem-files.js';
import { problem, seesInternals, sendProblem } from './problems.js';
import { routedTarget } from './request-target.js';

/** The header a forwarded call carries: the forwarding instance's id. */
export const FORWARDED_HEADER = 'commitd-forwarded-by';

/** Request headers the owner needs to answer as this instance would. Origin is not passed: it was checked here. */
const PASSED_REQUEST_HEADERS = ['authorization', 'content-type', 'accept', 'traceparent', 'tracestate', 'x-request-id'];
/** Answer headers passed back. */
const PASSED_ANSWER_HEADERS = ['content-type', 'retry-after', 'location', 'www-authenticate'];

export interface ForwardingOptions {
  readonly instanceId: string;
  /** Longest the owner may take to answer (it waits up to the answer bound for a decision). */
  readonly answerTimeoutMs: number;
  /** Connections kept to each other instance. */
  readonly connectionsPerPeer: number;
  /** Largest answer passed back. */
  readonly answerBytesMax: number;
  readonly metrics: Metrics;
  /** The private CA the other instances' certificates come from (COMMITD_PEER_CA_FILE), or null. */
  readonly peerCa?: string | null;
}

export class Forwarding {
  private readonly agent: Agent;

  constructor(private readonly o: ForwardingOptions) {
    this.agent = new Agent({
      connections: o.connectionsPerPeer,
      pipelining: 1,
      connect: trustingAlso(o.peerCa ?? null),
    });
  }

  /** Answers the call by the owner's answer, or 503 when there is no owner to ask now. */
  async forward(error: ElsewhereError, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (error.url === null || request.headers[FORWARDED_HEADER] !== undefined) {
      this.o.metrics.forwardedCalls.inc({ result: 'moving' });
      return moving(reply, seesInternals(request) ? error.message : movingMessage(error));
    }
    const headers: Record<string, string> = { [FORWARDED_HEADER]: this.o.instanceId };
    for (const name of PASSED_REQUEST_HEADERS) {
      const value = request.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    // The owner's advertised URL with what was routed here: never the raw
    // request target, whose absolute form would name a host of the caller's choosing.
    const target = routedTarget(request.routeOptions.url, request.params, request.query);
    if (target === null) {
      this.o.metrics.forwardedCalls.inc({ result: 'moving' });
      return moving(reply, seesInternals(request) ? error.message : movingMessage(error));
    }
    const hasBody = request.body !== undefined && request.body !== null;
    try {
      const answer = await send(new URL(target, error.url), {
        method: request.method as 'GET' | 'POST',
        headers,
        body: hasBody ? JSON.stringify(request.body) : null,
        dispatcher: this.agent,
        headersTimeout: this.o.answerTimeoutMs,
        bodyTimeout: this.o.answerTimeoutMs,
      });
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of answer.body) {
        bytes += (chunk as Buffer).length;
        if (bytes > this.o.answerBytesMax) throw new Error(`the answer is larger than ${this.o.answerBytesMax} bytes`);
        chunks.push(chunk as Buffer);
      }
      this.o.metrics.forwardedCalls.inc({ result: 'answered' });
      reply.code(answer.statusCode);
      for (const name of PASSED_ANSWER_HEADERS) {
        const value = answer.headers[name];
        if (typeof value === 'string') reply.header(name, value);
      }
      return reply.send(Buffer.concat(chunks));
    } catch (failure) {
      this.o.metrics.forwardedCalls.inc({ result: 'unreachable' });
      // The owner may be gone: the others take its transactions over within
      // seconds, and the retry finds the new owner. Its address and the
      // network's word are for the log and admin tokens only: to anyone
      // else they would map the network behind commitd.
      const detail = `${error.message}, which cannot be reached: ${(failure as Error).message}`;
      request.log.warn({ forwardedTo: error.url, err: failure }, 'forwarding failed');
      return moving(
        reply,
        seesInternals(request) ? detail : `${movingMessage(error)}: the instance driving it cannot be reached now`,
      );
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }
}

/** What any caller reads of a call that cannot be passed on now: no address. */
function movingMessage(error: ElsewhereError): string {
  return `${error.txId ?? 'a new transaction'} is driven by another instance of commitd; retry shortly`;
}

function moving(reply: FastifyReply, detail: string): FastifyReply {
  reply.header('retry-after', '1');
  return sendProblem(reply, problem('unavailable', 503, detail));
}
