// commitd/participant/inbox: the consuming half of a transactional message.
// A durable pull consumer on the user's JetStream stream; for each message
// the user's handler runs inside a database transaction that also records
// the message's id (Nats-Msg-Id, or stream:sequence when a publisher set
// none) in an inbox table, so a redelivery (an ack lost, a crash between the
// commit and the ack) or a duplicate publish beyond the stream's duplicate
// window changes nothing. The ack follows the commit; a handler that throws
// rolls back and its message is redelivered after a growing delay.
//
// The NATS client packages are imported on the first startInbox call: a
// service that imports this module and never starts an inbox (and any user
// of the rest of commitd) never loads them.

import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type InboxStore, MESSAGE_ID_LENGTH_MAX } from './inbox-store.js';

export { type PgInboxOptions, PgInboxStore } from './inbox-pg.js';
export { type SqliteInboxOptions, SqliteInboxStore } from './inbox-sqlite.js';
export { type InboxOutcome, type InboxStore, PRUNE_LIMIT_DEFAULT } from './inbox-store.js';

export interface InboxMessage<T> {
  /** The body parsed as JSON (commitd publishes exactly the JSON of the participant's `data`). */
  readonly data: T;
  /** Every header, first value of each (Nats-Msg-Id, Commitd-Transaction-Id, Commitd-Participant, the user's own). */
  readonly headers: Readonly<Record<string, string>>;
  readonly subject: string;
  /** The id recorded in the inbox: Nats-Msg-Id, or `<stream>:<sequence>` when absent. */
  readonly id: string;
  readonly stream: string;
  readonly streamSequence: number;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
}

export type InboxHandler<T, Tx> = (tx: Tx, message: InboxMessage<T>) => Promise<void> | void;

export type InboxEvent =
  | { readonly kind: 'applied' | 'duplicate'; readonly id: string; readonly deliveryCount: number }
  | {
      readonly kind: 'failed';
      readonly id: string;
      readonly deliveryCount: number;
      readonly retryInMs: number;
      readonly error: unknown;
    }
  | { readonly kind: 'malformed'; readonly stream: string; readonly streamSequence: number; readonly error: unknown }
  | { readonly kind: 'ack-failed'; readonly id: string; readonly error: unknown };

export interface InboxOptions<T, Tx> {
  /** nats://host:port (credentials in the URL), or several. Ignored when `connection` is given. */
  readonly servers?: string | readonly string[];
  /** A connection the service already holds; the inbox does not close it. */
  readonly connection?: NatsConnection;
  /** The user's stream (commitd creates none). */
  readonly stream: string;
  /** The durable consumer's name: created on the stream if missing, its filter and ack wait updated if they differ. */
  readonly consumer: string;
  /** Which subjects of the stream this consumer takes, e.g. `orders.placed`. */
  readonly filterSubject: string;
  readonly store: InboxStore<Tx>;
  readonly handler: InboxHandler<T, Tx>;
  /** The inbox rows' namespace; default `<stream>/<consumer>`. Two consumers sharing a database keep apart. */
  readonly inboxName?: string;
  /** Messages handled at once (default 1: in stream order). More: faster, but out of order. */
  readonly concurrency?: number;
  /** Redelivery when no ack arrives (a crashed consumer); default 30,000. Longer than the slowest handler. */
  readonly ackWaitMs?: number;
  /** Delay before the first retry of a failed handler, doubling per delivery up to retryDelayMsMax. Default 200. */
  readonly retryDelayMs?: number;
  /** Default 30,000. */
  readonly retryDelayMsMax?: number;
  /** Every outcome, for the service's logs and metrics. Must not throw. */
  readonly onEvent?: (event: InboxEvent) => void;
}

export interface Inbox {
  /** Stops taking messages, waits for those in hand (committed and acked, or rolled back and nak'd), closes its own connection. */
  stop(): Promise<void>;
}

const CONCURRENCY_MAX = 256;

export async function startInbox<T = unknown, Tx = unknown>(options: InboxOptions<T, Tx>): Promise<Inbox> {
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > CONCURRENCY_MAX) {
    throw new Error(`inbox concurrency must be an integer from 1 to ${CONCURRENCY_MAX}`);
  }
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  const retryDelayMs = options.retryDelayMs ?? 200;
  const retryDelayMsMax = options.retryDelayMsMax ?? 30_000;
  const inboxName = options.inboxName ?? `${options.stream}/${options.consumer}`;
  const onEvent = options.onEvent ?? (() => {});

  const { AckPolicy, jetstream, jetstreamManager } = await import('@nats-io/jetstream');
  let ownConnection: NatsConnection | null = null;
  let nc = options.connection;
  if (nc === undefined) {
    if (options.servers === undefined) throw new Error('inbox needs servers or a connection');
    const { connect } = await import('@nats-io/transport-node');
    const servers = typeof options.servers === 'string' ? options.servers : [...options.servers];
    // Reconnect for ever: a broker restart is an interruption, not the end.
    ownConnection = await connect({ servers, maxReconnectAttempts: -1 });
    nc = ownConnection;
  }

  try {
    const jsm = await jetstreamManager(nc);
    const wanted = {
      durable_name: options.consumer,
      ack_policy: AckPolicy.Explicit,
      filter_subject: options.filterSubject,
      ack_wait: ackWaitMs * 1_000_000,
      max_ack_pending: Math.max(concurrency * 4, 64),
    };
    const existing = await jsm.consumers.info(options.stream, options.consumer).catch(() => null);
    if (existing === null) await jsm.consumers.add(options.stream, wanted);
    else if (existing.config.filter_subject !== wanted.filter_subject || existing.config.ack_wait !== wanted.ack_wait) {
      await jsm.consumers.update(options.stream, options.consumer, {
        filter_subject: wanted.filter_subject,
        ack_wait: wanted.ack_wait,
      });
    }
  } catch (error) {
    await ownConnection?.close();
    throw error;
  }

  const consumer = await jetstream(nc).consumers.get(options.stream, options.consumer);
  // At most `concurrency` messages pulled ahead: a stopped inbox leaves the rest with the broker.
  const messages: ConsumerMessages = await consumer.consume({ max_messages: concurrency });

  const inHand = new Set<Promise<void>>();
  let freed: (() => void) | null = null;

  async function handle(m: JsMsg): Promise<void> {
    const info = m.info;
    let data: T;
    let id: string;
    const headers: Record<string, string> = {};
    try {
      for (const key of m.headers?.keys() ?? []) headers[key] = m.headers?.get(key) ?? '';
      id = headers['Nats-Msg-Id'] || `${info.stream}:${m.seq}`;
      if (id.length > MESSAGE_ID_LENGTH_MAX) throw new Error(`message id longer than ${MESSAGE_ID_LENGTH_MAX}`);
      data = m.json<T>();
    } catch (error) {
      // No retry makes it parse: terminate its delivery (it stays in the stream) and say so.
      m.term(`commitd inbox: ${error instanceof Error ? error.message : String(error)}`);
      onEvent({ kind: 'malformed', stream: info.stream, streamSequence: m.seq, error });
      return;
    }
    const message: InboxMessage<T> = {
      data,
      headers,
      subject: m.subject,
      id,
      stream: info.stream,
      streamSequence: m.seq,
      deliveryCount: info.deliveryCount,
    };
    let outcome: 'applied' | 'duplicate';
    try {
      outcome = await options.store.once(inboxName, id, (tx) => Promise.resolve(options.handler(tx, message)));
    } catch (error) {
      const retryInMs = Math.min(retryDelayMsMax, retryDelayMs * 2 ** Math.min(info.deliveryCount - 1, 30));
      m.nak(retryInMs);
      onEvent({ kind: 'failed', id, deliveryCount: info.deliveryCount, retryInMs, error });
      return;
    }
    try {
      // Committed: a lost ack only means a redelivery, which the inbox row turns into a no-op.
      await m.ackAck();
    } catch (error) {
      onEvent({ kind: 'ack-failed', id, error });
    }
    onEvent({ kind: outcome, id, deliveryCount: info.deliveryCount });
  }

  const loop = (async () => {
    for await (const m of messages) {
      while (inHand.size >= concurrency) await new Promise<void>((resolve) => (freed = resolve));
      const work = handle(m).finally(() => {
        inHand.delete(work);
        freed?.();
        freed = null;
      });
      inHand.add(work);
    }
  })();

  return {
    async stop() {
      await messages.close();
      await loop;
      await Promise.all(inHand);
      await ownConnection?.drain();
    },
  };
}
