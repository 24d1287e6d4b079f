// The typed client for services that start transactions, on undici: one
// keep-alive pool to commitd, a timeout on every call, the caller's
// AbortSignal honoured, errors as typed classes carrying the problem
// document, and automatic retries where commitd makes them safe (every call
// of the API may be repeated; a begin is made repeatable by its idempotency
// key, which the client generates when the caller gave none).

import { randomUUID } from 'node:crypto';
import { Agent, type Dispatcher, request } from 'undici';
import {
  CommitdError,
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  TimeoutError,
  TransactionAbortedError,
  UnauthorizedError,
  UnavailableError,
} from './errors.js';
import type {
  BeginOptions,
  InquiryOutcome,
  ListOptions,
  NewParticipant,
  Problem,
  ResolveOptions,
  Stats,
  Transaction,
  TransactionHistory,
  TransactionPage,
} from './types.js';

export interface ClientOptions {
  /** commitd's base URL, e.g. http://127.0.0.1:7070 */
  readonly url: string;
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string | null;
  /** Per call, unless the call says otherwise. Default 30 s (a commit waits for every participant). */
  readonly timeoutMs?: number;
  /** Further attempts after commitd was unreachable or answered 503/429. Default 2; 0 turns retries off. */
  readonly retries?: number;
  /** Backoff between attempts when commitd gives no Retry-After: doubling from min, capped at max. */
  readonly retryDelayMsMin?: number;
  readonly retryDelayMsMax?: number;
  /** Largest answer read. Default 16 MiB. */
  readonly maxAnswerBytes?: number;
  /** An undici dispatcher of the caller's (TLS settings, a proxy); default a pool the client owns. */
  readonly dispatcher?: Dispatcher;
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /**
   * The W3C traceparent of the caller's span, sent as the `traceparent`
   * header: the parent of commitd's spans for this call (on a begin, kept
   * with the transaction for everything after it).
   */
  readonly traceParent?: string;
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

export class CommitdClient {
  private readonly base: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(private readonly o: ClientOptions) {
    const url = new URL(o.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('commitd URL must be http(s)');
    this.base = url.href.replace(/\/+$/, '');
    this.ownsDispatcher = o.dispatcher === undefined;
    this.dispatcher = o.dispatcher ?? new Agent({ keepAliveTimeout: 10_000 });
  }

  /** Begins a transaction (201, or 200 for a repeat of the same idempotency key). */
  begin(options: BeginOptions = {}, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', '/v1/transactions', this.beginBody(options, false), call) as Promise<Transaction>;
  }

  /**
   * One-shot: begins and runs the whole two-phase commit in one request.
   * Resolves with the transaction `committed`, or `committing` when the commit
   * is decided and durable but a participant has not acknowledged yet;
   * rejects with TransactionAbortedError when it aborted.
   */
  run(options: BeginOptions, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', '/v1/transactions', this.beginBody(options, true), call) as Promise<Transaction>;
  }

  enlist(id: string, participant: NewParticipant, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/participants`, participant, call) as Promise<Transaction>;
  }

  /** Phase one only; rejects with TransactionAbortedError when a participant voted no or did not answer. */
  prepare(id: string, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/prepare`, undefined, call) as Promise<Transaction>;
  }

  /** Prepares if needed, decides, drives phase two; like `run` for the result. */
  commit(id: string, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/commit`, undefined, call) as Promise<Transaction>;
  }

  /**
   * Rejects with ConflictError when the outcome is already commit. With an
   * admin token it is an operator's abort (abortReason `operator`).
   */
  abort(id: string, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/abort`, undefined, call) as Promise<Transaction>;
  }

  get(id: string, call: CallOptions = {}): Promise<Transaction> {
    return this.send('GET', txPath(id), undefined, call) as Promise<Transaction>;
  }

  /** Newest first, one page; the filters combine (admin). */
  list(options: ListOptions = {}, call: CallOptions = {}): Promise<TransactionPage> {
    const query = new URLSearchParams();
    if (options.state !== undefined) query.set('state', options.state);
    if (options.stuck) query.set('stuck', 'true');
    if (options.heuristicUnresolved) query.set('heuristic', 'unresolved');
    if (options.olderThanMs !== undefined) query.set('olderThanMs', String(options.olderThanMs));
    if (options.participant !== undefined) query.set('participant', options.participant);
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.after !== undefined) query.set('after', options.after);
    const qs = query.toString();
    return this.send('GET', `/v1/transactions${qs ? `?${qs}` : ''}`, undefined, call) as Promise<TransactionPage>;
  }

  /** What happened to a transaction, oldest first (admin). */
  history(id: string, call: CallOptions = {}): Promise<TransactionHistory> {
    return this.send('GET', `${txPath(id)}/history`, undefined, call) as Promise<TransactionHistory>;
  }

  /**
   * Resends phase two at once to every participant that has not acknowledged,
   * with the backoff reset (admin). Resolves with the transaction (finished
   * when nothing was owed); ConflictError while it is undecided.
   */
  retry(id: string, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/retry`, undefined, call) as Promise<Transaction>;
  }

  /**
   * Marks unresolved heuristic outcomes (of one participant, or all) as
   * resolved by a person, with a note (admin); ConflictError when there is none.
   */
  resolve(id: string, options: ResolveOptions, call: CallOptions = {}): Promise<Transaction> {
    return this.send('POST', `${txPath(id)}/resolve`, options, call) as Promise<Transaction>;
  }

  /** The overview: work in flight, decision rate, stuck participants, unresolved heuristics (admin). */
  stats(call: CallOptions = {}): Promise<Stats> {
    return this.send('GET', '/v1/stats', undefined, call) as Promise<Stats>;
  }

  /**
   * The participant inquiry: commit, abort, or pending (an unknown id answers
   * abort: presumed abort); forgotten for a transaction finished longer ago
   * than commitd keeps outcomes (COMMITD_IDEMPOTENCY_KEY_RETENTION_MS): it
   * no longer knows which it was.
   */
  async outcome(id: string, call: CallOptions = {}): Promise<InquiryOutcome> {
    const body = (await this.send('GET', `${txPath(id)}/outcome`, undefined, call)) as { outcome: string };
    return body.outcome as InquiryOutcome;
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private beginBody(options: BeginOptions, commit: boolean): Record<string, unknown> {
    const retries = this.o.retries ?? 2;
    const idempotencyKey = options.idempotencyKey ?? (retries > 0 ? `client-${randomUUID()}` : undefined);
    return { ...options, participants: options.participants ?? [], idempotencyKey, ...(commit ? { commit } : {}) };
  }

  /** One call with its retries: only UnavailableError is retried, within the caller's signal and timeout. */
  private async send(method: 'GET' | 'POST', path: string, body: unknown, call: CallOptions): Promise<unknown> {
    const timeoutMs = call.timeoutMs ?? this.o.timeoutMs ?? 30_000;
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (call.signal !== undefined) signals.push(call.signal);
    const signal = AbortSignal.any(signals);
    const retries = this.o.retries ?? 2;
    const minMs = this.o.retryDelayMsMin ?? 100;
    const maxMs = this.o.retryDelayMsMax ?? 5000;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(method, path, body, signal, call.traceParent);
      } catch (error) {
        if (!(error instanceof UnavailableError) || attempt >= retries) throw error;
        const backoffMs = Math.min(maxMs, minMs * 2 ** attempt) * (0.5 + Math.random() / 2);
        await sleep(error.retryAfterMs ?? backoffMs, signal).catch(() => {
          throw error; // out of time while waiting: the caller hears why the call failed
        });
      }
    }
  }

  private async attempt(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    signal: AbortSignal,
    traceParent: string | undefined,
  ): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.o.token) headers.authorization = `Bearer ${this.o.token}`;
    if (traceParent !== undefined) headers.traceparent = traceParent;
    let answer: Answer;
    let retryAfter: string | undefined;
    try {
      const res = await request(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        dispatcher: this.dispatcher,
        signal,
      });
      const header = res.headers['retry-after'];
      retryAfter = Array.isArray(header) ? header[0] : header;
      answer = { status: res.statusCode, body: await readJson(res.body, this.o.maxAnswerBytes ?? 16 * 1024 * 1024) };
    } catch (error) {
      throw transportError(error, signal);
    }
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    throw problemError(answer, retryAfter);
  }
}

function txPath(id: string): string {
  return `/v1/transactions/${encodeURIComponent(id)}`;
}

async function readJson(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      body.destroy();
      throw new Error(`commitd's answer is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function problemError(answer: Answer, retryAfter: string | undefined): CommitdError {
  const p = asProblem(answer);
  switch (answer.status) {
    case 400:
    case 413:
    case 415:
      return new InvalidRequestError(answer.status, p);
    case 401:
    case 403:
      return new UnauthorizedError(answer.status, p);
    case 404:
      return new NotFoundError(answer.status, p);
    case 409:
      if (p.type === 'urn:commitd:problem:transaction-aborted' && isTransaction(p.transaction)) {
        return new TransactionAbortedError(answer.status, p, p.transaction);
      }
      return new ConflictError(answer.status, p);
    case 429:
    case 503:
      return new UnavailableError(answer.status, p, retryAfterMs(retryAfter));
  }
  return new CommitdError(answer.status, p);
}

function asProblem(answer: Answer): Problem {
  const b = answer.body;
  if (typeof b === 'object' && b !== null && typeof (b as Problem).type === 'string') return b as Problem;
  return {
    type: 'about:blank',
    title: `HTTP ${answer.status}`,
    status: answer.status,
    detail: typeof b === 'string' ? b.slice(0, 500) : `commitd answered HTTP ${answer.status}`,
  };
}

function isTransaction(value: unknown): value is Transaction {
  return typeof value === 'object' && value !== null && typeof (value as Transaction).id === 'string';
}

/** Retry-After in seconds or as an HTTP date; null when absent or unreadable. Capped at an hour. */
export function retryAfterMs(header: string | undefined, nowMs = Date.now()): number | null {
  if (header === undefined) return null;
  const ms = /^\d+$/.test(header.trim()) ? Number(header) * 1000 : Date.parse(header) - nowMs;
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 3_600_000) : null;
}

function transportError(error: unknown, signal: AbortSignal): CommitdError {
  if (error instanceof CommitdError) return error;
  const e = error as { code?: string; name?: string; message?: string };
  if (signal.aborted) {
    const reason = signal.reason as { name?: string } | undefined;
    const detail = reason?.name === 'TimeoutError' ? 'the call timed out' : 'the call was aborted by the caller';
    return new TimeoutError(0, { type: 'urn:commitd:client:timeout', title: 'Timed out', status: 0, detail });
  }
  const code = e.code ?? e.name ?? 'unknown';
  const p: Problem = {
    type: 'urn:commitd:client:unreachable',
    title: 'commitd could not be reached',
    status: 0,
    detail: `${code}: ${e.message ?? String(error)}`.slice(0, 500),
  };
  if (NETWORK_ERRORS.has(code)) return new UnavailableError(0, p, null, error);
  return new CommitdError(0, p);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
