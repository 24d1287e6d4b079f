// The connection to NATS JetStream that message participants publish through
// (issue 21). The NATS packages are loaded on first use, like pg: a commitd
// without a broker never loads them. The connection reconnects for ever; a
// publish that finds it down waits at most its timeout and fails with a text
// an operator can act on (the participant's lastError), never with the
// broker's address or credentials.

import fs from 'node:fs';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export interface NatsBrokerOptions {
  /**
   * nats://[user:password@]host:port (or tls://), several comma-separated.
   * Carries credentials: never logged, never in an error.
   */
  readonly url: string;
  /** A NATS credentials file (JWT and NKey seed), or null. */
  readonly credsFile: string | null;
  /** A PEM file of CAs to verify the broker's TLS certificate, or null. */
  readonly caFile: string | null;
  /** Delay between reconnection attempts. */
  readonly reconnectDelayMs: number;
  /** The connection's own failures (a reconnect that failed, an auth error): reported, never fatal. */
  readonly onError: (error: Error) => void;
}

export interface OutgoingMessage {
  readonly subject: string;
  /** The body, exactly. */
  readonly body: string;
  /** Nats-Msg-Id: the broker drops a second publish with it within the stream's duplicate window. */
  readonly msgId: string;
  readonly headers: Readonly<Record<string, string>>;
}

export type PublishResult =
  | { readonly ok: true; readonly stream: string; readonly seq: number; readonly duplicate: boolean }
  | { readonly ok: false; readonly error: string };

interface Connected {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
}

/** The parts of the URL the client takes apart: servers without credentials, and the credentials. */
export interface BrokerAddress {
  readonly servers: string[];
  readonly user: string | null;
  readonly pass: string | null;
  readonly token: string | null;
  readonly tls: boolean;
}

/** Throws an Error naming the setting (never the value) when the URL cannot be read. */
export function parseBrokerUrl(text: string): BrokerAddress {
  const servers: string[] = [];
  let user: string | null = null;
  let pass: string | null = null;
  let token: string | null = null;
  let tls = false;
  for (const part of text.split(',').map((s) => s.trim())) {
    if (part === '') continue;
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      throw new Error('COMMITD_NATS_URL is not a list of nats:// or tls:// URLs');
    }
    if (url.protocol !== 'nats:' && url.protocol !== 'tls:') {
      throw new Error('COMMITD_NATS_URL must use nats:// or tls://');
    }
    if (url.protocol === 'tls:') tls = true;
    if (url.username !== '') {
      if (url.password === '') token = decodeURIComponent(url.username);
      else {
        user = decodeURIComponent(url.username);
        pass = decodeURIComponent(url.password);
      }
    }
    servers.push(`${url.protocol}//${url.host}`);
  }
  if (servers.length === 0) throw new Error('COMMITD_NATS_URL names no server');
  return { servers, user, pass, token, tls };
}

export class NatsBroker {
  private connecting: Promise<Connected> | null = null;
  private closed = false;
  private readonly address: BrokerAddress;

  constructor(private readonly options: NatsBrokerOptions) {
    this.address = parseBrokerUrl(options.url);
  }

  /** Connected, or waiting to be: connects on first use and reconnects for ever after. */
  private connection(): Promise<Connected> {
    this.connecting ??= this.connect().catch((error: unknown) => {
      // An error at the first connection (bad credentials, a TLS failure):
      // the next publish tries again.
      this.connecting = null;
      throw error;
    });
    return this.connecting;
  }

  private async connect(): Promise<Connected> {
    const [{ connect, credsAuthenticator }, { jetstream }] = await Promise.all([
      import('@nats-io/transport-node'),
      import('@nats-io/jetstream'),
    ]);
    const a = this.address;
    const o = this.options;
    const nc = await connect({
      servers: a.servers,
      name: 'commitd',
      // Never give up: a decision is final, so its messages wait for the broker.
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      reconnectTimeWait: o.reconnectDelayMs,
      ...(a.user !== null ? { user: a.user, pass: a.pass ?? '' } : {}),
      ...(a.token !== null ? { token: a.token } : {}),
      ...(o.credsFile !== null ? { authenticator: credsAuthenticator(fs.readFileSync(o.credsFile)) } : {}),
      ...(a.tls || o.caFile !== null ? { tls: o.caFile !== null ? { caFile: o.caFile } : {} } : {}),
    });
    if (this.closed) {
      await nc.close();
      throw new Error('closed');
    }
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'error') o.onError(new Error(`NATS: ${describe((status as { error?: unknown }).error)}`));
      }
    })().catch(() => {});
    void nc.closed().then((error) => {
      // Closed for good (by close(), or an error the client does not retry):
      // the next publish connects afresh.
      if (this.connecting !== null && !this.closed) this.connecting = null;
      if (error) o.onError(new Error(`NATS connection closed: ${describe(error)}`));
    });
    return { nc, js: jetstream(nc) };
  }

  /**
   * Publishes and waits for the broker's acknowledgement, at most
   * `timeoutMs` in all (connecting included). Never throws.
   */
  async publish(message: OutgoingMessage, timeoutMs: number): Promise<PublishResult> {
    if (this.closed) return { ok: false, error: 'commitd is stopping' };
    const startedAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const connected = await Promise.race([
      this.connection().then(
        (c) => c,
        (error: unknown) => ({ error: describe(error) }),
      ),
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (connected === null) return { ok: false, error: `broker not reachable within ${timeoutMs} ms` };
    if ('error' in connected) return { ok: false, error: `broker: ${connected.error}` };
    const leftMs = Math.max(1, Math.round(timeoutMs - (performance.now() - startedAt)));
    try {
      const { headers } = await import('@nats-io/transport-node');
      const h = headers();
      for (const [k, v] of Object.entries(message.headers)) h.set(k, v);
      const ack = await connected.js.publish(message.subject, message.body, {
        msgID: message.msgId,
        headers: h,
        timeout: leftMs,
        // One try per call: the coordinator's backoff paces the retries.
        retries: 0,
      });
      return { ok: true, stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    } catch (error) {
      return { ok: false, error: publishError(error, message.subject, leftMs) };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const connecting = this.connecting;
    this.connecting = null;
    if (connecting === null) return;
    try {
      const { nc } = await connecting;
      await nc.close();
    } catch {
      // Never connected: nothing to close.
    }
  }
}

/** What went wrong, in words an operator can act on. */
function publishError(error: unknown, subject: string, timeoutMs: number): string {
  const e = error as { name?: string; message?: string; code?: unknown; cause?: unknown };
  const cause = e.cause as { name?: string } | undefined;
  // A publish nothing answers: no stream captures the subject. The JetStream
  // client reports the broker's 503 "no responders" as "jetstream is not
  // enabled", which is what it also means when JetStream is off.
  const noResponders = [e.name, cause?.name].some((n) => n === 'NoRespondersError' || n === 'JetStreamNotEnabled');
  if (noResponders || /no responders|jetstream is not enabled/i.test(String(e.message))) {
    return `no stream captures subject '${subject}' (the broker answered "no responders"; or JetStream is not enabled): create a stream for it`;
  }
  if (e.name === 'TimeoutError' || cause?.name === 'TimeoutError' || /timeout/i.test(String(e.message))) {
    return `no publish acknowledgement within ${timeoutMs} ms (broker down, restarting or slow)`;
  }
  return `broker: ${describe(error)}`;
}

function describe(error: unknown): string {
  const e = error as { message?: string };
  return (e?.message ?? String(error)).slice(0, 300);
}
