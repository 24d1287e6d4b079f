// Without an OpenTelemetry SDK (how commitd runs unless an operator loads
// one): nothing breaks, the traceparent is still kept and passed on to the
// participants as the spec asks of a service that does not trace, recovery
// still passes it on, and log lines about a transaction name its trace.

import { trace } from '@opentelemetry/api';
import t from 'tap';
import { type LineLogger, logReporting } from '../../src/reporting.js';
import { startHarness } from '../support/harness.js';
import { startParticipant } from '../support/participant.js';
import { commitAcrossRestart } from './restart.js';

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_TRACEPARENT = `00-${CLIENT_TRACE}-00f067aa0ba902b7-01`;

t.test('no SDK is loaded in this process', async (t) => {
  t.notOk(trace.getTracer('check').startSpan('check').isRecording());
});

t.test("the client's traceparent is kept and passed on unchanged; without one, none is sent", async (t) => {
  const h = await startHarness();
  const a = await startParticipant();
  t.teardown(async () => {
    await h.close(true);
    await a.close();
  });
  const begin = (headers: Record<string, string>) =>
    h.app.inject({
      method: 'POST',
      url: '/v1/transactions',
      headers,
      payload: { participants: [{ name: 'orders', url: a.url }], commit: true },
    });
  const traced = await begin({ traceparent: CLIENT_TRACEPARENT });
  t.equal(traced.statusCode, 200, traced.body);
  const tracedId = traced.json().id as string;
  t.equal((await h.coordinator.reads.get(tracedId)).traceParent, CLIENT_TRACEPARENT);
  for (const m of a.received.filter((r) => r.txId === tracedId)) {
    t.equal(m.headers.traceparent, CLIENT_TRACEPARENT, `${m.action}: the client's traceparent, passed on`);
  }

  const noneOrInvalid: Array<Record<string, string>> = [{}, { traceparent: `00-${CLIENT_TRACE}-${'0'.repeat(16)}-01` }];
  for (const headers of noneOrInvalid) {
    const plain = await begin(headers);
    t.equal(plain.statusCode, 200, plain.body);
    const id = plain.json().id as string;
    t.equal((await h.coordinator.reads.get(id)).traceParent, null, 'none kept: none came, or an invalid one');
    const messages = a.received.filter((r) => r.txId === id);
    t.equal(messages.length, 2);
    for (const m of messages) t.equal(m.headers.traceparent, undefined, `${m.action}: no traceparent`);
  }
});

t.test('after a restart, recovery passes the kept traceparent on', async (t) => {
  const { resent } = await commitAcrossRestart(t, CLIENT_TRACEPARENT);
  for (const m of resent) t.equal(m.headers.traceparent, CLIENT_TRACEPARENT);
});

t.test('a log line about a transaction carries its id and its trace id', async (t) => {
  const lines: Array<{ level: string; fields: object; message: string }> = [];
  const logger: LineLogger = {
    error: (fields, message) => lines.push({ level: 'error', fields, message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields, message }),
  };
  const h = await startHarness(
    {},
    undefined,
    false,
    null,
    logReporting(
      () => logger,
      () => {},
    ),
  );
  // Aborted on its own before hearing the commit: a heuristic outcome, which an operator must hear of.
  const a = await startParticipant((m) =>
    m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
  );
  t.teardown(async () => {
    await h.close(true);
    await a.close();
  });
  const res = await h.app.inject({
    method: 'POST',
    url: '/v1/transactions',
    headers: { traceparent: CLIENT_TRACEPARENT },
    payload: { participants: [{ name: 'orders', url: a.url }], commit: true },
  });
  t.equal(res.statusCode, 200, res.body);
  const id = res.json().id as string;
  const line = lines.find((l) => l.message.includes('heuristic'));
  t.ok(line, 'the heuristic is logged');
  t.same(line?.fields, { txId: id, traceId: CLIENT_TRACE });
  t.equal(line?.level, 'warn');
});
