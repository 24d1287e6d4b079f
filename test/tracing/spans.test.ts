// The spans commitd makes once an OpenTelemetry SDK is loaded, read from the
// SDK's in-memory exporter: their names, parents and trace, the traceparent
// each participant hears, and the trace recovery joins after a restart.
// (no-sdk.test.ts runs without one: a tap file is a process of its own, and
// the SDK is registered once per process.)

import { type SpanContext, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import t from 'tap';
import { parseTraceParent } from '../../src/tracing/traceparent.js';
import { startHarness } from '../support/harness.js';
import { type Received, startParticipant, waitUntil } from '../support/participant.js';
import { commitAcrossRestart } from './restart.js';

const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const CLIENT_TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;

function spansOf(txId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.attributes['commitd.transaction.id'] === txId);
}

function named(spans: readonly ReadableSpan[], name: string): ReadableSpan[] {
  return spans.filter((s) => s.name === name);
}

function one(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = named(spans, name);
  if (found.length !== 1) throw new Error(`${found.length} spans named ${name}: ${spans.map((s) => s.name)}`);
  return found[0] as ReadableSpan;
}

function parentOf(span: ReadableSpan): SpanContext | undefined {
  return span.parentSpanContext;
}

/** The traceparent a participant received with a message, read strictly. */
function heard(m: Received | undefined) {
  return parseTraceParent(m?.headers.traceparent as string | undefined);
}

t.beforeEach(() => exporter.reset());

t.test("a one-shot commit: every span in the client's trace, each with its parent", async (t) => {
  const h = await startHarness();
  const a = await startParticipant();
  const b = await startParticipant();
  t.teardown(async () => {
    await h.close(true);
    await a.close();
    await b.close();
  });
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    headers: { traceparent: CLIENT_TRACEPARENT },
    payload: {
      participants: [
        { name: 'orders', url: a.url },
        { name: 'payments', url: b.url },
      ],
      commit: true,
    },
  });
  t.equal(res.statusCode, 200, res.body);
  const id = res.json().id as string;
  t.equal((await h.coordinator.reads.get(id)).traceParent, CLIENT_TRACEPARENT, 'kept with the transaction as it came');

  await waitUntil(() => named(spansOf(id), 'commitd.participant.commit').length === 2);
  const spans = spansOf(id);
  for (const s of spans) t.equal(s.spanContext().traceId, CLIENT_TRACE, `${s.name} is in the client's trace`);
  const begin = one(spans, 'commitd.begin');
  t.equal(begin.kind, SpanKind.SERVER);
  t.same(parentOf(begin)?.spanId, CLIENT_SPAN, "the begin's parent is the client's span");
  t.match(begin.attributes, { 'commitd.transaction.state': 'committed', 'commitd.transaction.outcome': 'commit' });

  const phaseOne = one(spans, 'commitd.phase-one');
  t.equal(parentOf(phaseOne)?.spanId, begin.spanContext().spanId, 'phase one is a child of the begin');
  t.match(phaseOne.attributes, { 'commitd.phase_one.result': 'prepared', 'commitd.votes.no': 0 });
  const prepares = named(spans, 'commitd.participant.prepare');
  t.equal(prepares.length, 2);
  for (const p of prepares) {
    t.equal(p.kind, SpanKind.CLIENT);
    t.equal(parentOf(p)?.spanId, phaseOne.spanContext().spanId, 'each prepare call is a child of phase one');
    t.equal(p.attributes['commitd.vote'], 'yes');
  }
  const decision = one(spans, 'commitd.decision');
  t.equal(parentOf(decision)?.spanId, begin.spanContext().spanId);
  t.match(decision.attributes, { 'commitd.transaction.outcome': 'commit', 'commitd.decision.forced': true });
  for (const c of named(spans, 'commitd.participant.commit')) {
    t.equal(parentOf(c)?.spanId, begin.spanContext().spanId, 'phase two is a child of the call that set it off');
    t.equal(c.attributes['commitd.result'], 'acknowledged');
  }

  // Each participant hears the span of its own call, in the client's trace.
  for (const [participant, name] of [
    [a, 'orders'],
    [b, 'payments'],
  ] as const) {
    for (const action of ['prepare', 'commit'] as const) {
      const got = heard(participant.received.find((m) => m.action === action));
      const span = named(spans, `commitd.participant.${action}`).find(
        (s) => s.attributes['commitd.participant.name'] === name,
      );
      t.equal(got?.traceId, CLIENT_TRACE, `${name} hears its ${action} in the client's trace`);
      t.equal(got?.parentId, span?.spanContext().spanId, `${name}'s ${action}: the parent it hears is the call's span`);
      t.equal(got?.traceFlags, 1, 'sampled, as the client asked');
    }
  }
});

t.test('an explicit transaction: each call has its span; one without a traceparent joins the begin', async (t) => {
  const h = await startHarness();
  const no = await startParticipant((m) =>
    m.action === 'prepare' ? { status: 200, body: { vote: 'no', reason: 'out of stock' } } : undefined,
  );
  const down = await startParticipant((m) => (m.action === 'abort' ? { status: 503 } : undefined));
  t.teardown(async () => {
    await h.close(true);
    await no.close();
    await down.close();
  });
  const begun = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    headers: { traceparent: CLIENT_TRACEPARENT },
    payload: {
      participants: [
        { name: 'stock', url: no.url },
        { name: 'ledger', url: down.url },
      ],
    },
  });
  t.equal(begun.statusCode, 201, begun.body);
  const id = begun.json().id as string;
  const otherTrace = 'a'.repeat(32);
  const otherSpan = 'b'.repeat(16);
  const committed = await h.app.inject({
    method: 'POST',
    url: `/v1/transactions/${id}/commit`,
    headers: { traceparent: `00-${otherTrace}-${otherSpan}-01` },
  });
  t.equal(committed.statusCode, 409, committed.body);
  const aborted = await h.app.inject({ method: 'POST', url: `/v1/transactions/${id}/abort` });
  t.equal(aborted.statusCode, 200, aborted.body);

  await waitUntil(() => named(spansOf(id), 'commitd.participant.abort').length >= 1);
  const spans = spansOf(id);
  const begin = one(spans, 'commitd.begin');
  t.equal(parentOf(begin)?.spanId, CLIENT_SPAN);
  const commit = one(spans, 'commitd.commit');
  t.equal(commit.spanContext().traceId, otherTrace, "the commit call's own traceparent is its parent");
  t.equal(parentOf(commit)?.spanId, otherSpan);
  t.match(commit.attributes, { 'commitd.transaction.outcome': 'abort', 'commitd.transaction.abort_reason': 'vote' });
  const abort = one(spans, 'commitd.abort');
  t.equal(
    abort.spanContext().traceId,
    CLIENT_TRACE,
    'a call without a traceparent joins the trace kept with the transaction',
  );
  t.equal(parentOf(abort)?.spanId, CLIENT_SPAN);

  const phaseOne = one(spans, 'commitd.phase-one');
  t.equal(parentOf(phaseOne)?.spanId, commit.spanContext().spanId, 'phase one belongs to the commit that set it off');
  t.equal(phaseOne.status.code, SpanStatusCode.ERROR);
  t.match(phaseOne.attributes, { 'commitd.phase_one.result': 'aborted', 'commitd.votes.no': 1 });
  const vote = named(spans, 'commitd.participant.prepare').find(
    (s) => s.attributes['commitd.participant.name'] === 'stock',
  );
  t.match(vote?.attributes, { 'commitd.vote': 'no', 'commitd.vote.reason': 'out of stock', 'url.full': no.url });
  const decision = one(spans, 'commitd.decision');
  t.match(decision.attributes, { 'commitd.transaction.outcome': 'abort', 'commitd.transaction.abort_reason': 'vote' });
  const failed = named(spans, 'commitd.participant.abort');
  t.ok(failed.length >= 1, 'the abort to the participant that is down');
  t.equal(failed[0]?.status.code, SpanStatusCode.ERROR);
  t.match(failed[0]?.status.message, /HTTP 503/);
  t.equal(failed[0]?.attributes['commitd.result'], 'failed');
  t.equal(heard(down.received.find((m) => m.action === 'abort'))?.traceId, otherTrace);

  // An operator's "retry now", with a traceparent of its own: the resent abort is its child.
  const retryTrace = 'c'.repeat(32);
  const retrySpan = 'd'.repeat(16);
  const retried = await h.app.inject({
    method: 'POST',
    url: `/v1/transactions/${id}/retry`,
    headers: { traceparent: `00-${retryTrace}-${retrySpan}-01` },
  });
  t.ok(retried.statusCode >= 200 && retried.statusCode < 300, retried.body);
  const inRetry = (s: ReadableSpan) => s.spanContext().traceId === retryTrace;
  await waitUntil(() => named(spansOf(id), 'commitd.participant.abort').some(inRetry));
  const retry = one(spansOf(id), 'commitd.retry');
  t.equal(parentOf(retry)?.spanId, retrySpan);
  const resent = named(spansOf(id), 'commitd.participant.abort').find(inRetry);
  t.equal(parentOf(resent as ReadableSpan)?.spanId, retry.spanContext().spanId);
});

t.test("after a restart, recovery's phase-two calls carry the transaction's trace", async (t) => {
  const { txId: id, resent } = await commitAcrossRestart(t, CLIENT_TRACEPARENT, () => exporter.reset());
  const got = heard(resent.at(-1));
  t.equal(got?.traceId, CLIENT_TRACE, 'the participant hears the commit in the trace the client began');

  const acknowledged = (s: ReadableSpan) => s.attributes['commitd.result'] === 'acknowledged';
  await waitUntil(() => named(spansOf(id), 'commitd.participant.commit').some(acknowledged));
  const spans = spansOf(id);
  const recover = one(spans, 'commitd.recover');
  t.equal(recover.kind, SpanKind.INTERNAL);
  t.equal(recover.spanContext().traceId, CLIENT_TRACE);
  t.equal(parentOf(recover)?.spanId, CLIENT_SPAN, 'recovery joins the trace at the traceparent kept in the log');
  const delivered = named(spans, 'commitd.participant.commit').find(acknowledged);
  t.equal(parentOf(delivered as ReadableSpan)?.spanId, recover.spanContext().spanId);
  t.equal(got?.parentId, delivered?.spanContext().spanId);
});

t.test('an invalid traceparent is ignored: the transaction gets a trace of its own, kept for later', async (t) => {
  const h = await startHarness();
  const a = await startParticipant();
  t.teardown(async () => {
    await h.close(true);
    await a.close();
  });
  const invalid = `00-${'0'.repeat(32)}-${CLIENT_SPAN}-01`;
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    headers: { traceparent: invalid },
    payload: { participants: [{ name: 'orders', url: a.url }] },
  });
  t.equal(res.statusCode, 201, 'not refused');
  const id = res.json().id as string;
  const begin = one(spansOf(id), 'commitd.begin');
  t.equal(parentOf(begin), undefined, 'the begin is the root of a trace of its own');
  const kept = parseTraceParent((await h.coordinator.reads.get(id)).traceParent);
  t.equal(kept?.traceId, begin.spanContext().traceId, "the begin's span is kept as the transaction's trace");
  t.equal(kept?.parentId, begin.spanContext().spanId);

  const commit = await h.app.inject({
    method: 'POST',
    url: `/v1/transactions/${id}/commit`,
    headers: { traceparent: 'garbage' },
  });
  t.equal(commit.statusCode, 200, commit.body);
  const call = one(spansOf(id), 'commitd.commit');
  t.equal(call.spanContext().traceId, begin.spanContext().traceId, 'a call with an invalid one joins the kept trace');
  t.equal(parentOf(call)?.spanId, begin.spanContext().spanId);
  t.equal(heard(a.received.find((m) => m.action === 'commit'))?.traceId, begin.spanContext().traceId);
});
