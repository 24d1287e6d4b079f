// The participant kit's core: commitd's three messages (prepare, commit,
// abort) turned into calls of the service's callbacks, each inside one local
// transaction together with the kit's record of it. Adapters (node-handler,
// fastify-plugin) only move bytes in and out of `handle`.
//
// What it guarantees, whatever commitd or the network repeats or reorders:
// - a yes vote is given only after the service's change and the `prepared`
//   record are committed together;
// - a repeat of any message is answered from the record, without calling the
//   service again;
// - an abort of a transaction never prepared leaves a tombstone, so a late
//   prepare votes no;
// - commit runs only on a transaction this kit prepared (voted yes);
// - when a signing secret is set, unsigned, forged, replayed-too-late calls
//   are refused (401) and change nothing.
// It never decides an outcome itself: a prepared transaction waits for
// commitd's commit or abort, or for the answer of the outcome inquiry.

import { performance } from 'node:perf_hooks';
import { inquireOutcome } from './inquiry.js';
import { KeyedLock } from './keyed-lock.js';
import { json, type KitResponse, problem } from './problem.js';
import { type Action, decide, voteBody } from './protocol.js';
import {
  DEFAULT_SIGNATURE_WINDOW_MS,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  TRANSACTION_HEADER,
  verifySignature,
} from './signature.js';
import type { ParticipantStore, RecordState, TxKey, TxRecord, Vote } from './store.js';

export type { KitResponse } from './problem.js';

/**
 * What prepare gets. `Payload` is the payload's type as the service expects
 * it (the kit does not check it: it is what the client sent, as JSON); give
 * it on prepare's parameter, `prepare({ payload }: PrepareContext<Tx, Order>)`,
 * and commit and abort get the same type.
 */
export interface PrepareContext<Tx, Payload = unknown> {
  readonly transactionId: string;
  readonly participant: string;
  /** The payload the client gave this participant when it began the transaction (null when none). */
  readonly payload: Payload;
  /** The open local transaction: do the work here, so it commits with the kit's record or not at all. */
  readonly tx: Tx;
}

export interface FinishContext<Tx, Payload = unknown> {
  readonly transactionId: string;
  readonly participant: string;
  /**
   * The payload prepare got, kept with the prepared record; null when the
   * record holds none (prepared by a kit that did not keep payloads yet, or
   * a store that does not keep them).
   */
  readonly payload: Payload | null;
  readonly tx: Tx;
}

/** A vote, or a vote with the reason commitd records and shows (for a no). */
export type PrepareResult = Vote | { readonly vote: Vote; readonly reason?: string };

export interface MessageEvent {
  readonly action: Action;
  readonly transactionId: string;
  readonly participant: string;
  readonly status: number;
  /**
   * yes, no, read-only (prepare); committed, aborted, tombstone, refused
   * (commit/abort); failed: a callback or the store threw (answered 500).
   */
  readonly result: string;
  /** Answered from the record, without calling the service. */
  readonly repeat: boolean;
  readonly durationMs: number;
}

export interface ParticipantHooks {
  /** Every message answered (for the service's metrics and logs). */
  onMessage?(event: MessageEvent): void;
  /** A call refused before it reached the protocol (bad signature, bad body). */
  onRefused?(event: { readonly status: number; readonly detail: string; readonly path: string }): void;
  /**
   * A callback or the store failed; commitd will repeat the message. Without
   * this hook the kit writes the error to stderr (console.error).
   */
  onError?(error: unknown, context: { readonly action: Action | 'background'; readonly transactionId?: string }): void;
  /** Transactions prepared for longer than `stalePreparedAfterMs` (each background pass that finds some). */
  onStalePrepared?(records: readonly TxRecord[]): void;
  /** The outcome inquiry answered for a prepared transaction. */
  onInquiry?(event: { readonly transactionId: string; readonly participant: string; readonly outcome: string }): void;
}

/**
 * What prepare may return. An async prepare whose only return is a string
 * literal (`async prepare() { return 'yes' }`) has the type Promise<string>:
 * TypeScript keeps the literal only when the contextual return type is a
 * promise, which it cannot be for a callback that may also be synchronous.
 * So an async prepare may resolve to any string, and the kit checks it at
 * run time: anything but a vote fails the prepare (500, logged, counted as
 * no by commitd). A synchronous prepare is checked by the compiler.
 */
export type PrepareReturn = PrepareResult | Promise<PrepareResult | string>;

export interface ParticipantOptions<Tx, Payload = unknown> {
  readonly store: ParticipantStore<Tx>;
  /** Vote. Runs inside the local transaction; throwing rolls it back and answers 500 (counted as no). */
  prepare(context: PrepareContext<Tx, Payload>): PrepareReturn;
  /** Make the prepared change final. Runs inside a local transaction with the `committed` record. */
  commit?(context: FinishContext<Tx, Payload>): void | Promise<void>;
  /** Undo the prepared change. Runs inside a local transaction with the `aborted` record. */
  abort?(context: FinishContext<Tx, Payload>): void | Promise<void>;
  /** commitd's signing secret (or several while rotating); when set, unsigned calls are refused. */
  readonly signingSecret?: string | readonly string[] | null;
  /** Accepted distance between the call's timestamp and this host's clock. Default 5 minutes. */
  readonly signatureWindowMs?: number;
  /** Finished records and tombstones are deleted this long after they were last changed. Default 7 days. */
  readonly retentionMs?: number;
  /** How often the background pass runs (purge, stale report, inquiry); 0 turns it off. Default 10 s. */
  readonly backgroundIntervalMs?: number;
  /** Report transactions prepared for longer than this through `onStalePrepared`. Default 60 s. */
  readonly stalePreparedAfterMs?: number;
  /** When set, prepared transactions older than `inquireAfterMs` ask commitd's outcome inquiry. */
  readonly coordinatorUrl?: string | null;
  /** Bearer token for the inquiry, when commitd requires one. */
  readonly coordinatorToken?: string | null;
  /** Default 30 s: commitd normally delivers the outcome itself well before. */
  readonly inquireAfterMs?: number;
  /** Backoff cap between two inquiries about one transaction. Default 5 minutes. */
  readonly inquiryBackoffMaxMs?: number;
  readonly hooks?: ParticipantHooks;
  /** Clock, for tests. */
  readonly nowMs?: () => number;
}

/** What the adapters need of a participant: one call per request. */
export interface KitHandler {
  handle(request: KitRequest): Promise<KitResponse>;
}

/** A request as the adapters hand it over: the raw body, header names in lower case. */
export interface KitRequest {
  readonly method: string;
  /** The path as on the request line, without query string. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

const DAY_MS = 86_400_000;
const MAX_ID_CHARS = 200;
const MAX_REASON_CHARS = 500;
const PURGE_BATCH = 1000;
const BACKGROUND_BATCH = 500;
const INQUIRY_BASE_MS = 1000;

/** Thrown inside the local transaction to roll back the service's work on a no vote. */
class VotedNo {
  constructor(readonly reason: string | null) {}
}

export class Participant<Tx, Payload = unknown> implements KitHandler {
  private readonly lock = new KeyedLock();
  private readonly secrets: readonly string[];
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private backgroundRunning: Promise<void> | null = null;
  /** Per prepared transaction: attempts so far and when to ask next (in memory; a restart asks again). */
  private readonly inquiries = new Map<string, { attempts: number; nextAtMs: number }>();

  constructor(private readonly o: ParticipantOptions<Tx, Payload>) {
    const secret = o.signingSecret ?? null;
    this.secrets = secret === null ? [] : typeof secret === 'string' ? [secret] : [...secret];
    if (this.secrets.some((s) => s.length === 0)) throw new Error('an empty signing secret would accept forgeries');
    this.now = o.nowMs ?? Date.now;
  }

  /** Starts the background pass (purge, stale report, inquiry), if its interval is not 0. */
  start(): this {
    const intervalMs = this.o.backgroundIntervalMs ?? 10_000;
    if (intervalMs > 0 && this.timer === null) {
      this.timer = setInterval(() => void this.background(), intervalMs);
      this.timer.unref();
    }
    return this;
  }

  /** Stops the background pass and closes the store. */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.backgroundRunning;
    await this.o.store.close();
  }

  /** Answers one call from commitd. Never throws. */
  async handle(request: KitRequest): Promise<KitResponse> {
    const action = actionOf(request.path);
    if (action === null)
      return this.refuse(request, problem('not-found', 404, 'Not found', 'not a participant endpoint'));
    if (request.method.toUpperCase() !== 'POST') {
      return this.refuse(request, problem('method-not-allowed', 405, 'Method not allowed', 'commitd POSTs'));
    }
    const headerTx = header(request.headers, TRANSACTION_HEADER);
    if (this.secrets.length > 0) {
      const verdict = verifySignature(
        {
          method: request.method,
          path: request.path,
          transactionId: headerTx,
          timestamp: header(request.headers, TIMESTAMP_HEADER),
          signature: header(request.headers, SIGNATURE_HEADER),
          body: request.body,
        },
        { secrets: this.secrets, windowMs: this.o.signatureWindowMs ?? DEFAULT_SIGNATURE_WINDOW_MS, nowMs: this.now() },
      );
      if (!verdict.ok)
        return this.refuse(request, problem('unauthorized', 401, 'Authentication required', verdict.reason));
    }
    const message = parseMessage(request.body);
    if (typeof message === 'string')
      return this.refuse(request, problem('invalid-request', 400, 'The request is not valid', message));
    if (headerTx !== undefined && headerTx !== message.transactionId) {
      return this.refuse(
        request,
        problem('invalid-request', 400, 'The request is not valid', 'x-commitd-transaction differs from the body'),
      );
    }
    return this.apply(action, message, message.payload);
  }

  /** Runs one message under the key's lock: decide from the record, then act and record in one transaction. */
  private async apply(action: Action, key: TxKey, payload: unknown): Promise<KitResponse> {
    const startedAt = performance.now();
    const lockKey = `${key.participant}\u0000${key.transactionId}`;
    const report = (status: number, result: string, repeat: boolean) =>
      this.o.hooks?.onMessage?.({
        action,
        transactionId: key.transactionId,
        participant: key.participant,
        status,
        result,
        repeat,
        durationMs: performance.now() - startedAt,
      });
    try {
      return await this.lock.run(lockKey, async () => {
        const outcome = await this.attempt(action, key, payload);
        report(outcome.response.status, outcome.result, outcome.repeat);
        return outcome.response;
      });
    } catch (error) {
      this.failed(error, { action, transactionId: key.transactionId });
      report(500, 'failed', false);
      return problem('internal', 500, 'Internal error', `the participant failed to ${action}; it is safe to repeat`);
    }
  }

  private async attempt(
    action: Action,
    key: TxKey,
    payload: unknown,
  ): Promise<{ response: KitResponse; result: string; repeat: boolean }> {
    const store = this.o.store;
    try {
      return await store.run(key, async (tx) => {
        const record = await store.read(tx, key);
        const step = decide(action, record);
        if (step.kind === 'answer') {
          const result = resultOf(action, step.status, step.body, record);
          return { response: json(step.status, step.body), result, repeat: true };
        }
        if (step.kind === 'tombstone') {
          await store.write(tx, this.record(key, 'aborted', null, null, null));
          return { response: json(200, {}), result: 'tombstone', repeat: false };
        }
        const ids = { transactionId: key.transactionId, participant: key.participant, tx };
        if (action === 'prepare') {
          // The payload is the client's JSON; its type is the service's claim.
          const { vote, reason } = normalizeVote(await this.o.prepare({ ...ids, payload: payload as Payload }));
          if (vote === 'no') throw new VotedNo(reason);
          // Kept only while prepared: commit and abort get it, nothing after them needs it.
          const prepared = vote === 'yes' ? { payload } : {};
          const state: RecordState = vote === 'yes' ? 'prepared' : 'read-only';
          await store.write(tx, { ...this.record(key, state, vote, reason, this.now()), ...prepared });
          return { response: json(200, voteBody(vote, reason)), result: vote, repeat: false };
        }
        const context = { ...ids, payload: ((record as TxRecord).payload ?? null) as Payload | null };
        if (action === 'commit') await this.o.commit?.(context);
        else await this.o.abort?.(context);
        await store.write(tx, { ...(record as TxRecord), state: step.next, updatedAtMs: this.now(), payload: null });
        return { response: json(200, {}), result: step.next, repeat: false };
      });
    } catch (error) {
      if (!(error instanceof VotedNo)) throw error;
      // The service's work is rolled back; the no is recorded on its own so a
      // repeat gets the same answer and a later abort finds it finished.
      await store.run(key, (tx) => store.write(tx, this.record(key, 'aborted', 'no', error.reason, null)));
      return { response: json(200, voteBody('no', error.reason)), result: 'no', repeat: false };
    }
  }

  private record(
    key: TxKey,
    state: RecordState,
    vote: Vote | null,
    reason: string | null,
    preparedAtMs: number | null,
  ): TxRecord {
    return {
      transactionId: key.transactionId,
      participant: key.participant,
      state,
      vote,
      reason,
      preparedAtMs,
      updatedAtMs: this.now(),
    };
  }

  /**
   * A callback, the store or the inquiry failed. The service's hook hears it;
   * without one it goes to stderr, since otherwise commitd's "prepare
   * answered HTTP 500" would be the only trace of it.
   */
  private failed(error: unknown, context: { readonly action: Action | 'background'; readonly transactionId?: string }) {
    const onError = this.o.hooks?.onError;
    if (onError !== undefined) {
      onError(error, context);
      return;
    }
    const what = context.transactionId === undefined ? context.action : `${context.action} of ${context.transactionId}`;
    console.error(`commitd/participant: ${what} failed (commitd will repeat it):`, error);
  }

  private refuse(request: KitRequest, response: KitResponse): KitResponse {
    const detail = (JSON.parse(response.body) as { detail: string }).detail;
    this.o.hooks?.onRefused?.({ status: response.status, detail, path: request.path });
    return response;
  }

  /**
   * One background pass: delete finished records past retention, report
   * transactions prepared too long, and (with a coordinator URL) ask the
   * outcome of those prepared past `inquireAfterMs`, with backoff per
   * transaction. Passes never overlap.
   */
  background(): Promise<void> {
    if (this.backgroundRunning === null) {
      this.backgroundRunning = this.backgroundPass()
        .catch((error) => this.failed(error, { action: 'background' }))
        .finally(() => {
          this.backgroundRunning = null;
        });
    }
    return this.backgroundRunning;
  }

  private async backgroundPass(): Promise<void> {
    const nowMs = this.now();
    await this.o.store.purge(nowMs - (this.o.retentionMs ?? 7 * DAY_MS), PURGE_BATCH);
    const prepared = await this.o.store.prepared(BACKGROUND_BATCH);
    const staleAfterMs = this.o.stalePreparedAfterMs ?? 60_000;
    const stale = prepared.filter((r) => nowMs - (r.preparedAtMs ?? r.updatedAtMs) > staleAfterMs);
    if (stale.length > 0) this.o.hooks?.onStalePrepared?.(stale);
    const live = new Set(prepared.map((r) => `${r.participant}\u0000${r.transactionId}`));
    for (const key of this.inquiries.keys()) if (!live.has(key)) this.inquiries.delete(key);
    const coordinatorUrl = this.o.coordinatorUrl ?? null;
    if (coordinatorUrl === null) return;
    const inquireAfterMs = this.o.inquireAfterMs ?? 30_000;
    for (const record of prepared) {
      if (nowMs - (record.preparedAtMs ?? record.updatedAtMs) < inquireAfterMs) continue;
      const key = `${record.participant}\u0000${record.transactionId}`;
      const state = this.inquiries.get(key) ?? { attempts: 0, nextAtMs: 0 };
      if (state.nextAtMs > nowMs) continue;
      state.attempts += 1;
      const capMs = this.o.inquiryBackoffMaxMs ?? 300_000;
      const delayMs = Math.min(capMs, INQUIRY_BASE_MS * 2 ** Math.min(state.attempts, 30));
      // Full jitter on the upper half: many participants restarted together do not ask in step.
      state.nextAtMs = nowMs + delayMs / 2 + Math.random() * (delayMs / 2);
      this.inquiries.set(key, state);
      let outcome: string;
      try {
        outcome = await inquireOutcome(coordinatorUrl, record.transactionId, this.o.coordinatorToken ?? null);
      } catch (error) {
        this.failed(error, { action: 'background', transactionId: record.transactionId });
        continue;
      }
      this.o.hooks?.onInquiry?.({ transactionId: record.transactionId, participant: record.participant, outcome });
      // commitd's answer is its decision: apply it exactly as if its message had come.
      // Forgotten is rolled back, as presumed abort: commitd forgets a
      // transaction only after every participant had its outcome, so one
      // still prepared for it never counted towards a commit
      // (docs/protocol.md, "Outcome inquiry").
      if (outcome === 'commit' || outcome === 'abort' || outcome === 'forgotten') {
        const action = outcome === 'commit' ? 'commit' : 'abort';
        await this.apply(action, { transactionId: record.transactionId, participant: record.participant }, null);
      }
    }
  }
}

export function createParticipant<Tx, Payload = unknown>(
  options: ParticipantOptions<Tx, Payload>,
): Participant<Tx, Payload> {
  return new Participant<Tx, Payload>(options);
}

function actionOf(path: string): Action | null {
  const last = path.slice(path.lastIndexOf('/') + 1);
  return last === 'prepare' || last === 'commit' || last === 'abort' ? last : null;
}

function header(headers: KitRequest['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

interface Message extends TxKey {
  readonly payload: unknown;
}

function parseMessage(body: Buffer): Message | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the body is not valid JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'the body must be a JSON object';
  const m = parsed as Record<string, unknown>;
  for (const field of ['transactionId', 'participant'] as const) {
    const value = m[field];
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_CHARS) {
      return `${field} must be a string of 1 to ${MAX_ID_CHARS} characters`;
    }
  }
  return { transactionId: m.transactionId as string, participant: m.participant as string, payload: m.payload ?? null };
}

function normalizeVote(result: PrepareResult | string): { vote: Vote; reason: string | null } {
  const vote = typeof result === 'string' ? result : result?.vote;
  if (vote !== 'yes' && vote !== 'no' && vote !== 'read-only') {
    throw new Error(`prepare returned ${JSON.stringify(result)}, not a vote (yes, no, read-only)`);
  }
  const reason = typeof result === 'object' && typeof result.reason === 'string' ? result.reason : null;
  return { vote, reason: reason === null ? null : reason.slice(0, MAX_REASON_CHARS) };
}

function resultOf(action: Action, status: number, body: Record<string, unknown>, record: TxRecord | null): string {
  if (action === 'prepare') return String(body.vote);
  if (status === 200) return record?.state ?? 'acknowledged';
  return 'refused';
}
