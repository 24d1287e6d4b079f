// The spans of one transaction, through @opentelemetry/api: a no-op until an
// operator loads an OpenTelemetry SDK (docs/operations.md, "Traces"), and cheap then too:
// no attribute is built for a span that does not record.
//
// The spans (docs/design.md, "Traces"):
//   commitd.begin | .enlist | .prepare | .commit | .abort   a client's call, until its answer
//   commitd.retry                                            an operator's "retry now"
//   commitd.recover | commitd.deadline                       what recovery or a deadline did to it
//     commitd.phase-one                                      first prepare sent -> every vote in
//       commitd.participant.prepare                          one prepare call (HTTP or database)
//     commitd.decision                                       the outcome, until its write is done
//     commitd.participant.commit | .abort                    one phase-two delivery attempt
// Each call span is a child of the traceparent the client sent with that
// call, or of the one kept with the transaction (the begin's, durable in the
// log), so a call without one, a deadline, and recovery after a restart all
// join the transaction's trace. What a call, recovery or deadline sets off
// (the phases, the decision, the participant calls) is a child of the newest
// such span: the one that set it off, as events are handled one at a time.

import {
  type Context,
  INVALID_SPANID,
  INVALID_TRACEID,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import type { ParticipantTarget, PhaseTwoAnswer, PrepareAnswer } from '../participants/participant-client.js';
import type { PhaseTwoMessage, Refusal, Step, Transaction } from '../protocol/types.js';
import { formatTraceParent, parseTraceParent, traceIdOf } from './traceparent.js';

/** The tracer every span comes from: a proxy that finds an SDK registered before or after this module loaded. */
const tracer = trace.getTracer('commitd');

/** What starts spans of its own in a transaction's trace: a client's call, recovery, a deadline. */
export type OriginName = 'begin' | 'enlist' | 'prepare' | 'commit' | 'abort' | 'retry' | 'recover' | 'deadline';

const ORIGIN_SPAN_NAMES: Record<OriginName, string> = {
  begin: 'commitd.begin',
  enlist: 'commitd.enlist',
  prepare: 'commitd.prepare',
  commit: 'commitd.commit',
  abort: 'commitd.abort',
  retry: 'commitd.retry',
  recover: 'commitd.recover',
  deadline: 'commitd.deadline',
};

/** The span of a call, recovery or deadline: ended once its answer is known. */
export class OriginSpan {
  constructor(
    readonly span: Span,
    /** The parent of what it sets off. */
    readonly context: Context,
  ) {}

  /**
   * The traceparent of this span, when it has a valid one: kept with a
   * transaction begun without a traceparent while an SDK traces, so that
   * the later calls, recovery and deadline join the trace commitd started.
   */
  traceParent(): string | null {
    return traceParentOf(this.span.spanContext());
  }

  /** The call answered: what the transaction is now, or the refusal it met. */
  end(tx: Transaction, refusal: Refusal | null): void {
    const span = this.span;
    if (span.isRecording()) {
      span.setAttributes({
        'commitd.transaction.id': tx.id,
        'commitd.transaction.state': tx.state,
        ...(tx.outcome === null ? {} : { 'commitd.transaction.outcome': tx.outcome }),
        ...(tx.abortReason === null ? {} : { 'commitd.transaction.abort_reason': tx.abortReason }),
      });
      if (refusal !== null) {
        span.setAttribute('commitd.refusal', refusal.code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: refusal.detail });
      }
    }
    span.end();
  }

  /** The call failed (a log that cannot be written, a limit): the caller heard an error. */
  failed(error: unknown): void {
    failSpan(this.span, error);
    this.span.end();
  }

  /** Ends the span with the call's answer once `work` settles, and hands the answer on. */
  around<T extends { readonly tx: Transaction; readonly refusal: Refusal | null }>(work: Promise<T>): Promise<T> {
    return work.then(
      (answer) => {
        this.end(answer.tx, answer.refusal);
        return answer;
      },
      (error: unknown) => {
        this.failed(error);
        throw error;
      },
    );
  }
}

/** Starts a begin's span, before its transaction exists: it may give the transaction its traceparent. */
export function startBegin(traceParent: string | null): OriginSpan {
  return startOrigin('begin', contextOf(traceParent) ?? ROOT_CONTEXT);
}

function startOrigin(name: OriginName, parent: Context): OriginSpan {
  // A client's call is served (the client's span is its parent); recovery and a deadline are commitd's own.
  const kind = name === 'recover' || name === 'deadline' ? SpanKind.INTERNAL : SpanKind.SERVER;
  const span = tracer.startSpan(ORIGIN_SPAN_NAMES[name], { kind }, parent);
  return new OriginSpan(span, childContext(parent, span));
}

export class TransactionTrace {
  /** The trace kept with the transaction, for log lines about it; null for none. */
  readonly traceId: string | null;
  /** The parent of a call that comes without a traceparent, of recovery, of a deadline. */
  private readonly kept: Context;
  /** The parent of what the newest call, recovery or deadline set off. */
  private current: Context;
  private phaseOne: Span | null = null;
  private phaseOneContext: Context | null = null;
  private decision: Span | null = null;
  private lastSpanContext: SpanContext | null = null;
  private lastTraceParent: string | null = null;

  constructor(
    private readonly txId: string,
    /** The traceparent kept with the transaction (protocol/types.ts). */
    traceParent: string | null,
  ) {
    // A header stored by an older commitd, or damaged on disk, is ignored like an invalid one at the door.
    const kept = contextOf(traceParent);
    this.traceId = kept === null ? null : traceIdOf(traceParent);
    this.kept = kept ?? ROOT_CONTEXT;
    this.current = this.kept;
  }

  /** The begin's span (startBegin) becomes the parent of what the begin sets off. */
  adopt(begin: OriginSpan): void {
    if (begin.span.isRecording()) begin.span.setAttribute('commitd.transaction.id', this.txId);
    this.current = begin.context;
  }

  /** A call (with the traceparent it came with, or null), recovery or a deadline reaches the transaction. */
  origin(name: OriginName, traceParent: string | null): OriginSpan {
    const origin = startOrigin(name, contextOf(traceParent) ?? this.kept);
    if (origin.span.isRecording()) origin.span.setAttribute('commitd.transaction.id', this.txId);
    this.current = origin.context;
    return origin;
  }

  /** The first prepare leaves: phase one begins. */
  phaseOneStarted(tx: Transaction): void {
    if (this.phaseOne !== null) return;
    const span = tracer.startSpan('commitd.phase-one', undefined, this.current);
    if (span.isRecording()) {
      span.setAttributes({ 'commitd.transaction.id': this.txId, 'commitd.participants': tx.participants.length });
    }
    this.phaseOne = span;
    this.phaseOneContext = childContext(this.current, span);
  }

  /**
   * A step is about to be performed: phase one ends once the transaction
   * leaves `preparing`, and a new outcome opens the decision's span, ended
   * when the step's writes are done (stepped) or failed (writeFailed).
   */
  stepping(before: Transaction, result: Step): void {
    const after = result.tx;
    if (this.phaseOne !== null && after.state !== 'preparing') this.endPhaseOne(after);
    if (before.outcome !== null || after.outcome === null) return;
    const span = tracer.startSpan('commitd.decision', undefined, this.current);
    if (span.isRecording()) {
      span.setAttributes({
        'commitd.transaction.id': this.txId,
        'commitd.transaction.outcome': after.outcome,
        'commitd.decision.forced': result.effects.some((e) => e.type === 'persist' && e.forced),
        ...(after.abortReason === null ? {} : { 'commitd.transaction.abort_reason': after.abortReason }),
      });
    }
    this.decision = span;
  }

  /** The step's effects are performed: a forced decision is on disk. */
  stepped(): void {
    this.decision?.end();
    this.decision = null;
  }

  /** A forced write failed: the decision being written did not happen. */
  writeFailed(error: unknown): void {
    if (this.decision === null) return;
    failSpan(this.decision, error);
    this.stepped();
  }

  /**
   * One prepare call: `call` gets the traceparent to send with it. A span
   * that does not record adds no promise to the call's path.
   */
  prepareCall(
    target: ParticipantTarget,
    call: (traceParent: string | null) => Promise<PrepareAnswer>,
  ): Promise<PrepareAnswer> {
    const span = this.startCall('commitd.participant.prepare', target, 0, this.phaseOneContext ?? this.current);
    if (!span.isRecording()) return call(this.traceParentOf(span));
    return this.recordPrepare(span, call);
  }

  private async recordPrepare(
    span: Span,
    call: (traceParent: string | null) => Promise<PrepareAnswer>,
  ): Promise<PrepareAnswer> {
    const answer = await this.callIn(span, call);
    if (answer.kind === 'vote') {
      span.setAttribute('commitd.vote', answer.vote);
      if (answer.reason !== null) span.setAttribute('commitd.vote.reason', answer.reason);
    } else {
      // Counts as `no`, and the participant may be prepared: an error of the call.
      span.setAttributes({ 'commitd.vote': 'no', 'commitd.vote.lost': true });
      span.setStatus({ code: SpanStatusCode.ERROR, message: answer.reason });
    }
    span.end();
    return answer;
  }

  /** One phase-two delivery attempt (0 is the first), as prepareCall. */
  deliveryCall(
    message: PhaseTwoMessage,
    target: ParticipantTarget,
    attempt: number,
    call: (traceParent: string | null) => Promise<PhaseTwoAnswer>,
  ): Promise<PhaseTwoAnswer> {
    const span = this.startCall(`commitd.participant.${message}`, target, attempt, this.current);
    if (!span.isRecording()) return call(this.traceParentOf(span));
    return this.recordDelivery(span, message, call);
  }

  private async recordDelivery(
    span: Span,
    message: PhaseTwoMessage,
    call: (traceParent: string | null) => Promise<PhaseTwoAnswer>,
  ): Promise<PhaseTwoAnswer> {
    const answer = await this.callIn(span, call);
    span.setAttribute('commitd.result', answer.kind);
    if (answer.kind === 'heuristic') {
      span.setAttribute('commitd.heuristic', answer.heuristic);
      span.setStatus({ code: SpanStatusCode.ERROR, message: `heuristic ${answer.heuristic}, decided ${message}` });
    } else if (answer.kind === 'failed') {
      span.setStatus({ code: SpanStatusCode.ERROR, message: answer.error });
    }
    span.end();
    return answer;
  }

  /** The transaction leaves memory: a span still open ends here rather than never. */
  close(): void {
    if (this.phaseOne !== null) {
      if (this.phaseOne.isRecording()) this.phaseOne.setAttribute('commitd.interrupted', true);
      this.phaseOne.end();
      this.phaseOne = null;
    }
    this.stepped();
  }

  private startCall(name: string, target: ParticipantTarget, attempt: number, parent: Context): Span {
    const span = tracer.startSpan(name, { kind: SpanKind.CLIENT }, parent);
    if (span.isRecording()) {
      span.setAttributes({
        'commitd.transaction.id': this.txId,
        'commitd.participant.name': target.name,
        ...(target.url === null ? {} : { 'url.full': target.url }),
        ...(target.database === null ? {} : { 'commitd.participant.database': target.database }),
        ...(attempt === 0 ? {} : { 'commitd.attempt': attempt }),
      });
    }
    return span;
  }

  /**
   * The traceparent to send for a call's span. Without an SDK every call of
   * an origin carries the same context (its parent's, below): written once.
   */
  private traceParentOf(span: Span): string | null {
    const context = span.spanContext();
    if (context !== this.lastSpanContext) {
      this.lastSpanContext = context;
      this.lastTraceParent = traceParentOf(context);
    }
    return this.lastTraceParent;
  }

  /** Participant clients answer rather than throw; a throw is a bug, recorded on the span before it goes on. */
  private async callIn<T>(span: Span, call: (traceParent: string | null) => Promise<T>): Promise<T> {
    try {
      return await call(this.traceParentOf(span));
    } catch (error) {
      failSpan(span, error);
      span.end();
      throw error;
    }
  }

  private endPhaseOne(after: Transaction): void {
    const span = this.phaseOne as Span;
    if (span.isRecording()) {
      let no = 0;
      for (const p of after.participants) if (p.vote === 'no') no++;
      span.setAttributes({
        'commitd.phase_one.result': after.outcome === 'abort' ? 'aborted' : 'prepared',
        'commitd.votes.no': no,
      });
      if (after.outcome === 'abort') span.setStatus({ code: SpanStatusCode.ERROR, message: 'aborted in phase one' });
    }
    span.end();
    this.phaseOne = null;
    this.phaseOneContext = null;
  }
}

/**
 * The context `span`'s children start in. The API's no-op span only carries
 * its parent's span context (or none): its children may as well start in
 * the parent's context, which spares a copy of it per span without an SDK.
 */
function childContext(parent: Context, span: Span): Context {
  const own = span.spanContext();
  if (own.traceId === INVALID_TRACEID || own === trace.getSpanContext(parent)) return parent;
  return trace.setSpan(parent, span);
}

/** A context whose span is the remote parent a traceparent names; null for none or an invalid one. */
function contextOf(traceParent: string | null): Context | null {
  const parsed = traceParent === null ? null : parseTraceParent(traceParent);
  if (parsed === null) return null;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parsed.traceId,
    spanId: parsed.parentId,
    traceFlags: parsed.traceFlags,
    isRemote: true,
  });
}

/**
 * The traceparent naming a span. Without an SDK the API's spans carry their
 * parent's context, so a participant still hears the traceparent commitd
 * was given (the spec asks a service that does not trace to pass it on);
 * with neither, there is none.
 */
function traceParentOf(context: SpanContext): string | null {
  if (context.traceId === INVALID_TRACEID || context.spanId === INVALID_SPANID) return null;
  return formatTraceParent(context.traceId, context.spanId, context.traceFlags);
}

function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof Error) span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}
