// A test's view of a JetStream stream: create one with a name unique to the
// run, read every message back, and count them by Nats-Msg-Id and by
// transaction id — the exactly-once check of message participants.

import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  readonly data: string;
  readonly headers: Record<string, string>;
}

export interface TestStream {
  readonly name: string;
  /** Subjects it captures: `<prefix>.>` */
  readonly prefix: string;
  /** Every message in the stream, in order (the broker's own store, read back). */
  read(): Promise<StoredMessage[]>;
  close(): Promise<void>;
}

export function uniqueSuffix(): string {
  return randomBytes(4).toString('hex');
}

export async function connectTo(url: string): Promise<NatsConnection> {
  return connect({ servers: url, maxReconnectAttempts: 20, reconnectTimeWait: 100 });
}

/** A file-stored stream capturing `<prefix>.>`, with a duplicate window (default: the broker's 2 minutes). */
export async function createStream(url: string, duplicateWindowMs = 120_000, prefix?: string): Promise<TestStream> {
  const nc = await connectTo(url);
  const jsm = await jetstreamManager(nc);
  const suffix = uniqueSuffix();
  const name = `COMMITD_TEST_${suffix}`;
  const subjects = prefix ?? `test${suffix}`;
  await jsm.streams.add({
    name,
    subjects: [`${subjects}.>`],
    storage: 'file',
    duplicate_window: duplicateWindowMs * 1_000_000,
  } as Parameters<typeof jsm.streams.add>[0]);
  return {
    name,
    prefix: subjects,
    async read() {
      const info = await jsm.streams.info(name);
      const out: StoredMessage[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        let m: Awaited<ReturnType<typeof jsm.streams.getMessage>>;
        try {
          m = await jsm.streams.getMessage(name, { seq });
        } catch {
          continue; // deleted
        }
        if (m === null) continue;
        const headers: Record<string, string> = {};
        for (const [k, v] of m.header ?? []) headers[k] = v[0] ?? '';
        out.push({ seq: m.seq, subject: m.subject, data: m.string(), headers });
      }
      return out;
    },
    async close() {
      try {
        await jsm.streams.delete(name);
      } catch {
        // the broker may be gone already
      }
      await nc.close();
    },
  };
}

/** How many times each key occurs. */
export function countBy(messages: readonly StoredMessage[], key: (m: StoredMessage) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(key(m), (counts.get(key(m)) ?? 0) + 1);
  return counts;
}

/**
 * The exactly-once check: every committed transaction's message in the
 * stream once (by Nats-Msg-Id and by transaction id), no aborted one's ever.
 */
export function exactlyOnce(
  messages: readonly StoredMessage[],
  committed: readonly string[],
  aborted: readonly string[],
): { duplicatesByTx: number; duplicatesByMsgId: number; lost: number; publishedAborted: number; checked: number } {
  const extra = (counts: Map<string, number>) => [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
  const byTx = countBy(messages, (m) => m.headers['Commitd-Transaction-Id'] ?? '');
  const byMsgId = countBy(messages, (m) => m.headers['Nats-Msg-Id'] ?? '');
  return {
    duplicatesByTx: extra(byTx),
    duplicatesByMsgId: extra(byMsgId),
    lost: committed.filter((id) => (byTx.get(id) ?? 0) === 0).length,
    publishedAborted: aborted.filter((id) => (byTx.get(id) ?? 0) > 0).length,
    checked: messages.length,
  };
}
