// Participants over HTTP (docs/protocol.md, "Participant protocol"), on undici: one
// keep-alive pool per participant origin, a hard timeout on every call, and
// answers read with a size limit so a misbehaving participant cannot make the
// coordinator buffer without bound. Calls in flight are bounded per origin as
// well as in total, so a slow participant cannot hold the calls of others;
// every address connected to passes the URL policy (checked-lookup.ts);
// HTTPS is verified against the system store plus an optional CA, with an
// optional client certificate; calls are signed (signing.ts). An origin whose
// last call got no answer (timed out, no connection) is paced: one call to it
// at a time, and all such origins together hold at most a quarter of the
// calls in flight; a call beyond is not sent and fails at once (it is
// retried later like any failed call), so participants that never answer
// cannot take the slots healthy ones need (issue 23). Redirects are
// never followed (undici's dispatcher does not, and no redirect interceptor
// is installed): a 3xx is an answer like any other non-2xx. A call in a trace
// carries the W3C traceparent of its span.

import tls from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import type { PhaseTwoMessage } from '../protocol/types.js';
import { CallLimiter } from './call-limiter.js';
import { AddressRefusedError, checkedLookup, type Resolver } from './checked-lookup.js';
import type { ParticipantClient, ParticipantTarget, PhaseTwoAnswer, PrepareAnswer } from './participant-client.js';
import { signature } from './signing.js';
import { checkParticipantUrl, OPEN_POLICY, type UrlPolicyContext } from './url-policy.js';

export interface HttpParticipantsOptions {
  readonly prepareTimeoutMs: number;
  readonly phaseTwoTimeoutMs: number;
  readonly connectionsPerOrigin: number;
  /** Calls to all participants together in flight at once; more wait their turn. */
  readonly callsInFlightMax: number;
  readonly keepAliveTimeoutMs: number;
  /** Largest answer body read from a participant. */
  readonly answerBytesMax: number;
  /** Calls to one participant origin in flight at once; more wait their turn (within their time limit). */
  readonly callsPerOriginMax: number;
  /** When set, every call carries an HMAC-SHA256 signature participants can check. */
  readonly signingSecret: string | null;
  /** Secrets per participant origin (normalised), overriding signingSecret. */
  readonly participantSecrets?: ReadonlyMap<string, string>;
  /** TLS for https participants: extra trusted CAs (PEM, added to the system store), a client certificate and key. */
  readonly tls?: { readonly ca: string | null; readonly cert: string | null; readonly key: string | null };
  /**
   * The URL policy, checked again at call time without its allowlist (a URL
   * stored under an older list is still called): loopback and private
   * addresses when commitd is exposed, commitd instances. Default: open.
   */
  readonly urlPolicy?: UrlPolicyContext;
  /** How names are resolved (tests substitute one); every address is checked against the URL policy. */
  readonly resolve?: Resolver;
  readonly onCall?: (call: CallRecord) => void;
}

export interface CallRecord {
  readonly message: 'prepare' | PhaseTwoMessage;
  /** yes, no, read-only, lost, acknowledged, heuristic, failed */
  readonly result: string;
  readonly durationMs: number;
}

interface Endpoint {
  readonly origin: string;
  readonly basePath: string;
  readonly secret: string | null;
  /** Why calls to it are refused (a URL stored before the policy, or from an older commitd), or null. */
  readonly refused: string | null;
}

const MAX_CACHED_ENDPOINTS = 10_000;
/** Unresponsive origins remembered at once; the oldest is forgotten (and called normally again) beyond. */
const SUSPECT_ORIGINS_MAX = 100_000;
/** The share of the calls in flight that calls to unresponsive origins may hold together. */
const SUSPECT_SHARE_DIVISOR = 4;

export class HttpParticipants implements ParticipantClient {
  private readonly agent: Agent;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly limiter: CallLimiter;
  private readonly perOrigin = new Map<string, CallLimiter>();
  /** Origins whose last call got no answer, in the order they were marked. */
  private readonly suspects = new Set<string>();
  /** Unresponsive origins with their one call in flight. */
  private readonly probing = new Set<string>();
  private readonly probesMax: number;

  constructor(private readonly options: HttpParticipantsOptions) {
    this.limiter = new CallLimiter(options.callsInFlightMax);
    this.probesMax = Math.max(1, Math.floor(options.callsInFlightMax / SUSPECT_SHARE_DIVISOR));
    const t = options.tls;
    this.agent = new Agent({
      connections: options.connectionsPerOrigin,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      pipelining: 1,
      // A host that never answers the connection counts within the same bound.
      connectTimeout: Math.min(options.prepareTimeoutMs, options.phaseTwoTimeoutMs),
      connect: {
        lookup: checkedLookup(options.resolve, options.urlPolicy?.internalRefused ?? false),
        // Node replaces its default store when `ca` is given: the system
        // store stays trusted, the configured CA is added to it.
        ...(t?.ca ? { ca: [...tls.rootCertificates, t.ca] } : {}),
        ...(t?.cert && t.key ? { cert: t.cert, key: t.key } : {}),
      },
    });
  }

  /**
   * Runs a call holding a slot of its origin first, then one of the total:
   * calls queued behind a slow origin wait in that origin's queue and take
   * none of the slots other origins need. Both waits count against the
   * call's one time limit.
   */
  private limited<T extends PrepareAnswer | PhaseTwoAnswer>(
    url: string | null,
    call: (remainingMs: number) => Promise<T>,
    timeLimitMs: number,
    expired: () => T,
    paced: T,
  ): Promise<T> {
    // No url (the caller refuses it in post): only the total applies.
    if (url === null) return this.limiter.run(call, timeLimitMs, expired);
    const origin = this.endpoint(url).origin;
    if (this.suspects.has(origin)) {
      if (this.probing.has(origin) || this.probing.size >= this.probesMax) return Promise.resolve(paced);
      this.probing.add(origin);
      return this.limiter
        .run((remainingMs) => this.watched(origin, call(remainingMs)), timeLimitMs, expired)
        .finally(() => this.probing.delete(origin));
    }
    let limiter = this.perOrigin.get(origin);
    if (limiter === undefined) {
      limiter = new CallLimiter(this.options.callsPerOriginMax);
      this.perOrigin.set(origin, limiter);
    }
    const own = limiter;
    return own
      .run(
        (remainingMs) => this.limiter.run((left) => this.watched(origin, call(left)), remainingMs, expired),
        timeLimitMs,
        expired,
      )
      .finally(() => {
        // Idle origins are forgotten: the map holds only origins with calls.
        if (own.idle && this.perOrigin.get(origin) === own) this.perOrigin.delete(origin);
      });
  }

  /** Marks the origin unresponsive when the call got no answer at all, clears the mark when it got one. */
  private async watched<T extends PrepareAnswer | PhaseTwoAnswer>(origin: string, call: Promise<T>): Promise<T> {
    const answer = await call;
    const reason = answer.kind === 'lost' ? answer.reason : answer.kind === 'failed' ? answer.error : null;
    if (reason === NO_ANSWER || reason === NO_CONNECTION) {
      this.suspects.delete(origin);
      this.suspects.add(origin);
      if (this.suspects.size > SUSPECT_ORIGINS_MAX) {
        const oldest = this.suspects.values().next().value;
        if (oldest !== undefined) this.suspects.delete(oldest);
      }
    } else if (reason !== REFUSED_BY_POLICY) {
      this.suspects.delete(origin);
    }
    return answer;
  }

  async prepare(
    txId: string,
    target: ParticipantTarget,
    payloadJson: string | null,
    traceParent: string | null = null,
  ): Promise<PrepareAnswer> {
    const startedAt = performance.now();
    const body = `{"transactionId":${JSON.stringify(txId)},"participant":${JSON.stringify(target.name)},"payload":${payloadJson ?? 'null'}}`;
    const answer = await this.limited(
      target.url,
      (remainingMs) => this.prepareCall(txId, target, body, remainingMs, traceParent),
      this.options.prepareTimeoutMs,
      (): PrepareAnswer => ({ kind: 'lost', reason: NO_ANSWER_QUEUED }),
      { kind: 'lost', reason: PACED },
    );
    const result = answer.kind === 'vote' ? answer.vote : 'lost';
    this.options.onCall?.({ message: 'prepare', result, durationMs: performance.now() - startedAt });
    return answer;
  }

  private async prepareCall(
    txId: string,
    target: ParticipantTarget,
    body: string,
    timeLimitMs: number,
    traceParent: string | null,
  ): Promise<PrepareAnswer> {
    let answer: RawAnswer;
    try {
      answer = await this.post(target, 'prepare', txId, body, timeLimitMs, traceParent);
    } catch (error) {
      return { kind: 'lost', reason: describe(error) };
    }
    if (answer.statusCode !== 200)
      return { kind: 'lost', reason: `bad answer: prepare answered HTTP ${answer.statusCode}` };
    const json = parseJson(answer.body);
    if (isObject(json)) {
      const vote = json.vote;
      if (vote === 'yes' || vote === 'no' || vote === 'read-only') {
        const reason = typeof json.reason === 'string' ? json.reason.slice(0, 500) : null;
        return { kind: 'vote', vote, reason };
      }
    }
    return { kind: 'lost', reason: 'bad answer: prepare answered without a valid vote' };
  }

  async deliver(
    message: PhaseTwoMessage,
    txId: string,
    target: ParticipantTarget,
    traceParent: string | null = null,
  ): Promise<PhaseTwoAnswer> {
    const startedAt = performance.now();
    const answer = await this.limited(
      target.url,
      (remainingMs) => this.deliverCall(message, txId, target, remainingMs, traceParent),
      this.options.phaseTwoTimeoutMs,
      (): PhaseTwoAnswer => ({ kind: 'failed', error: NO_ANSWER_QUEUED }),
      { kind: 'failed', error: PACED },
    );
    this.options.onCall?.({ message, result: answer.kind, durationMs: performance.now() - startedAt });
    return answer;
  }

  private async deliverCall(
    message: PhaseTwoMessage,
    txId: string,
    target: ParticipantTarget,
    timeLimitMs: number,
    traceParent: string | null,
  ): Promise<PhaseTwoAnswer> {
    const body = `{"transactionId":${JSON.stringify(txId)},"participant":${JSON.stringify(target.name)}}`;
    let answer: RawAnswer;
    try {
      answer = await this.post(target, message, txId, body, timeLimitMs, traceParent);
    } catch (error) {
      return { kind: 'failed', error: describe(error) };
    }
    const status = answer.statusCode;
    if ((status >= 200 && status < 300) || (message === 'abort' && status === 404)) return { kind: 'acknowledged' };
    if (status === 409) {
      const json = parseJson(answer.body);
      const contrary = message === 'commit' ? 'abort' : 'commit';
      if (isObject(json) && json.heuristic === contrary) return { kind: 'heuristic', heuristic: contrary };
      if (isObject(json) && json.heuristic === message) return { kind: 'acknowledged' };
      return { kind: 'failed', error: `bad answer: ${message} answered HTTP 409 without a heuristic outcome` };
    }
    return { kind: 'failed', error: `bad answer: ${message} answered HTTP ${status}` };
  }

  private post(
    target: ParticipantTarget,
    action: string,
    txId: string,
    body: string,
    timeLimitMs: number,
    traceParent: string | null,
  ): Promise<RawAnswer> {
    // The routing client sends only HTTP targets here; a target without a url
    // is a bug upstream, answered as a failed call rather than a crash.
    if (target.url === null) return Promise.reject(new PolicyRefusedError(`participant ${target.name} has no url`));
    const endpoint = this.endpoint(target.url);
    if (endpoint.refused !== null) return Promise.reject(new PolicyRefusedError(endpoint.refused));
    const path = `${endpoint.basePath}/${action}`;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-commitd-transaction': txId,
    };
    // Not signed: the W3C spec lets a tracing proxy in front of the
    // participant replace it with its own span, and it changes nothing the
    // participant does (docs/protocol.md, "Signatures").
    if (traceParent !== null) headers.traceparent = traceParent;
    if (endpoint.secret !== null) {
      const timestamp = String(Date.now());
      headers['x-commitd-timestamp'] = timestamp;
      headers['x-commitd-signature'] = signature(endpoint.secret, {
        timestamp,
        method: 'POST',
        path,
        transactionId: txId,
        body,
      });
    }
    return new Promise((resolve, reject) => {
      const reader = new AnswerReader(this.options.answerBytesMax, resolve, reject);
      // One limit for the whole call, from when it was asked for: undici's
      // own timeouts count from the wire and the body timeout restarts with
      // every chunk, so a participant trickling its answer byte by byte, or
      // a call queued for a connection, would outlive them.
      const timer = setTimeout(() => reader.expire(), Math.max(0, timeLimitMs));
      reader.onSettled = () => clearTimeout(timer);
      this.agent.dispatch(
        {
          origin: endpoint.origin,
          path,
          method: 'POST',
          headers,
          body,
          headersTimeout: timeLimitMs,
          bodyTimeout: timeLimitMs,
        },
        reader,
      );
    });
  }

  private endpoint(url: string): Endpoint {
    let endpoint = this.endpoints.get(url);
    if (endpoint === undefined) {
      const parsed = new URL(url);
      // The fixed rules of the URL policy, again at call time: a URL stored
      // before they existed is not called either.
      const verdict = checkParticipantUrl(url, { ...(this.options.urlPolicy ?? OPEN_POLICY), allowed: [] });
      endpoint = {
        origin: parsed.origin,
        basePath: parsed.pathname.replace(/\/+$/, ''),
        secret: this.options.participantSecrets?.get(parsed.origin) ?? this.options.signingSecret,
        refused: verdict.ok ? null : `participant url refused (${verdict.rule})`,
      };
      if (this.endpoints.size >= MAX_CACHED_ENDPOINTS) this.endpoints.clear();
      this.endpoints.set(url, endpoint);
    }
    return endpoint;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** A participant's answer: its status and its body, or null for a body over the size limit. */
interface RawAnswer {
  readonly statusCode: number;
  readonly body: Buffer | null;
}

/**
 * Reads an answer straight off undici's dispatcher: no stream, no async
 * iterator, one promise per call (the request API costs several per call,
 * measurable at thousands of calls a second). A body over `maxBytes` aborts
 * the call (a participant cannot make the coordinator buffer without bound)
 * and reads as null.
 */
class AnswerReader implements Dispatcher.DispatchHandler {
  private statusCode = 0;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private tooLarge = false;
  private settled = false;
  private expired = false;
  private abort: ((error?: Error) => void) | null = null;
  /** Runs once, when the call has its answer or its error. */
  onSettled: () => void = () => {};

  constructor(
    private readonly maxBytes: number,
    private readonly resolve: (answer: RawAnswer) => void,
    private readonly reject: (error: Error) => void,
  ) {}

  /** The call's time is up: it fails now, and the request is aborted as soon as undici lets us. */
  expire(): void {
    if (this.settled) return;
    this.expired = true;
    this.fail(new CallTimeoutError());
    this.abort?.(new CallTimeoutError());
  }

  onConnect(abort: (error?: Error) => void): void {
    this.abort = abort;
    // Expired while queued for a connection: never send it.
    if (this.expired) abort(new CallTimeoutError());
  }

  onHeaders(statusCode: number): boolean {
    // An informational 1xx is followed by the real answer.
    if (statusCode >= 200) this.statusCode = statusCode;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      this.tooLarge = true;
      this.abort?.(new Error('answer over the size limit'));
      return false;
    }
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    const body = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.succeed({ statusCode: this.statusCode, body });
  }

  onError(error: Error): void {
    if (this.tooLarge) this.succeed({ statusCode: this.statusCode, body: null });
    else this.fail(error);
  }

  private succeed(answer: RawAnswer): void {
    if (this.settled) return;
    this.settled = true;
    this.onSettled();
    this.resolve(answer);
  }

  private fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.onSettled();
    this.reject(error);
  }
}

class CallTimeoutError extends Error {
  override name = 'CallTimeoutError';
  readonly code = 'COMMITD_CALL_TIMEOUT';
}

const NO_ANSWER = 'no answer within the timeout';
const NO_ANSWER_QUEUED = `${NO_ANSWER} (it waited for a call slot all that time)`;
const PACED = 'not sent: the participant did not answer lately and one call to it is already out (retried later)';

function parseJson(body: Buffer | null): unknown {
  if (body === null) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * What kind of failure a call was, as the caller reads it in a vote reason or
 * `lastError` (issue 23): timed out, refused by the address policy, or no
 * connection. Never the raw socket error: ECONNREFUSED against "other side
 * closed" told a client which ports of which hosts answer.
 */
function describe(error: unknown): string {
  const e = error as { name?: string; code?: string; message?: string };
  if (e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 'COMMITD_CALL_TIMEOUT')
    return NO_ANSWER;
  if (e instanceof AddressRefusedError || e instanceof PolicyRefusedError || e?.code === 'COMMITD_ADDRESS_REFUSED')
    return REFUSED_BY_POLICY;
  return NO_CONNECTION;
}

class PolicyRefusedError extends Error {
  override name = 'PolicyRefusedError';
}

const REFUSED_BY_POLICY = 'refused by the participant address policy';
const NO_CONNECTION = 'no connection (unreachable, refused or closed before answering)';
