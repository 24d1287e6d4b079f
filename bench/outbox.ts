// The hand-written outbox, as a careful team writes it, for the messages
// benchmark's baseline (bench/messages.ts):
// - the service writes its row and an outbox row in one PostgreSQL
//   transaction (and NOTIFYs the relay in it, so the relay wakes on commit);
// - the relay takes a batch of outbox rows (FOR UPDATE SKIP LOCKED, so
//   several relays can run), publishes each to JetStream with Nats-Msg-Id
//   (a republish after a relay crash is dropped by the stream's duplicate
//   window), waits for every publish acknowledgement, deletes the rows and
//   commits. It polls as well as listening, so a lost notification delays a
//   message by at most pollIntervalMs.

import { jetstream } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';

const CHANNEL = 'outbox_ready';

export async function createOutboxSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, item TEXT NOT NULL, qty INT NOT NULL)`);
  await pool.query(`CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    data JSONB NOT NULL
  )`);
}

/** The service's write: its row and the event's outbox row commit together. */
export async function placeOrderWithOutbox(
  client: pg.ClientBase,
  order: { id: string; item: string; qty: number },
): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('INSERT INTO orders (id, item, qty) VALUES ($1, $2, $3)', [order.id, order.item, order.qty]);
    await client.query('INSERT INTO outbox (message_id, subject, data) VALUES ($1, $2, $3)', [
      `outbox:${order.id}`,
      'orders.placed',
      JSON.stringify(order),
    ]);
    await client.query(`SELECT pg_notify('${CHANNEL}', '')`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

export interface Relay {
  /** Messages published and deleted from the outbox so far. */
  readonly relayed: () => number;
  stop(): Promise<void>;
}

export async function startRelay(
  connectionString: string,
  nc: NatsConnection,
  options: { batchSize?: number; pollIntervalMs?: number } = {},
): Promise<Relay> {
  const batchSize = options.batchSize ?? 256;
  const pollIntervalMs = options.pollIntervalMs ?? 100;
  const js = jetstream(nc);
  const worker = new pg.Client({ connectionString });
  const listener = new pg.Client({ connectionString });
  await worker.connect();
  await listener.connect();
  await listener.query(`LISTEN ${CHANNEL}`);
  let relayed = 0;
  let stopping = false;
  let wake: (() => void) | null = null;
  listener.on('notification', () => wake?.());

  /** One batch: publish, wait for every ack, delete, commit. Answers how many rows it moved. */
  async function batch(): Promise<number> {
    await worker.query('BEGIN');
    try {
      const { rows } = await worker.query<{ seq: string; message_id: string; subject: string; data: unknown }>(
        'SELECT seq, message_id, subject, data FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED',
        [batchSize],
      );
      await Promise.all(
        rows.map((row) => {
          const h = headers();
          h.set('Nats-Msg-Id', row.message_id);
          return js.publish(row.subject, JSON.stringify(row.data), { headers: h });
        }),
      );
      if (rows.length > 0) {
        await worker.query('DELETE FROM outbox WHERE seq = ANY($1::bigint[])', [rows.map((r) => r.seq)]);
      }
      await worker.query('COMMIT');
      relayed += rows.length;
      return rows.length;
    } catch (error) {
      await worker.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }

  const loop = (async () => {
    while (!stopping) {
      let moved = 0;
      try {
        moved = await batch();
      } catch (error) {
        console.error('relay:', (error as Error).message); // broker or database down: try again after a pause
      }
      if (moved < batchSize && !stopping) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollIntervalMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    }
  })();

  return {
    relayed: () => relayed,
    async stop() {
      stopping = true;
      wake?.();
      await loop;
      await worker.end();
      await listener.end();
    },
  };
}
