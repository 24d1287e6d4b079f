// A participant for tests: a real HTTP server on 127.0.0.1 that keeps the
// state of every transaction it has seen (prepared, committed, aborted), logs
// every message, and answers as the test tells it to.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Action = 'prepare' | 'commit' | 'abort';

export interface Received {
  readonly action: Action;
  readonly txId: string;
  readonly body: Record<string, unknown>;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawBody: string;
}

/** What to answer: a status and JSON body; `hang` never answers; `reset` drops the connection. */
export type Reply = { status: number; body?: unknown; delayMs?: number } | 'hang' | 'reset';

export type Behavior = (message: Received, participant: TestParticipant) => Reply | undefined;

export type LocalState = 'prepared' | 'committed' | 'aborted' | 'refused';

export interface TestParticipant {
  readonly url: string;
  readonly received: Received[];
  /** What this participant did for each transaction, as a real resource manager would. */
  readonly states: Map<string, LocalState>;
  behavior: Behavior | null;
  count(action: Action, txId?: string): number;
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The default answers of a well-behaved participant: vote yes, then do as told, idempotently. */
export function defaultReply(m: Received, p: TestParticipant): Reply {
  const state = p.states.get(m.txId);
  switch (m.action) {
    case 'prepare':
      if (state === 'aborted') return { status: 200, body: { vote: 'no', reason: 'already aborted' } };
      p.states.set(m.txId, 'prepared');
      return { status: 200, body: { vote: 'yes' } };
    case 'commit':
      if (state === 'aborted') return { status: 409, body: { heuristic: 'abort' } };
      p.states.set(m.txId, 'committed');
      return { status: 200, body: {} };
    case 'abort':
      if (state === 'committed') return { status: 409, body: { heuristic: 'commit' } };
      // Remember the abort even for an unknown id: a late prepare must not
      // prepare it (presumed abort needs this of participants).
      p.states.set(m.txId, 'aborted');
      return state === undefined ? { status: 404, body: {} } : { status: 200, body: {} };
  }
}

export async function startParticipant(behavior: Behavior | null = null): Promise<TestParticipant> {
  const hanging = new Set<http.ServerResponse>();
  const participant: TestParticipant = {
    url: '',
    received: [],
    states: new Map(),
    behavior,
    count: (action, txId) =>
      participant.received.filter((m) => m.action === action && (txId === undefined || m.txId === txId)).length,
    waitFor: (predicate, timeoutMs = 10_000) => waitUntil(predicate, timeoutMs),
    close: async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    let rawBody = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      rawBody += chunk;
    });
    req.on('end', () => {
      const action = (req.url ?? '').split('/').pop() as Action;
      const body = JSON.parse(rawBody || '{}') as Record<string, unknown>;
      const message: Received = { action, txId: String(body.transactionId), body, headers: req.headers, rawBody };
      participant.received.push(message);
      const reply = participant.behavior?.(message, participant) ?? defaultReply(message, participant);
      if (reply === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if (reply === 'reset') {
        req.socket.destroy();
        return;
      }
      const send = () => {
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.body ?? {}));
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  (participant as { url: string }).url = `http://127.0.0.1:${port}/tx`;
  return participant;
}

export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
