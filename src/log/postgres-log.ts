// The decision log on PostgreSQL (COMMITD_STORE_URL): the same rows as the
// SQLite log, in a schema of its own, written by one dedicated connection.
//
// Group commit: the snapshots queued during one turn of the event loop leave
// as one statement (a multi-row upsert from arrays, with the payloads and this
// writer's flush marker in the same statement): one round trip, one
// transaction, one COMMIT. synchronous_commit is on for every session, so the
// COMMIT returns once the WAL is flushed; only then do forced writers hear.
// One batch is in flight at a time; what is queued meanwhile waits for it.
//
// A failure that the server answered (an error response) rolled the batch
// back: forced writers hear of it (the API answers 503) and lazy records wait
// for the next batch. A connection lost while a batch was on its way leaves
// its fate unknown: its writers hear nothing until a new connection has
// ended the old session and read the flush marker, which says whether the
// batch committed. A write is never reported done that did not commit, nor
// failed that did.

import pg from 'pg';
import type { Actor, HistoryEntry } from '../protocol/history.js';
import { ALPHABET, ID_SHARDS, SHARD_DIGIT_INDEX, shardOfId } from '../protocol/transaction-ids.js';
import type { Transaction } from '../protocol/types.js';
import {
  type DecisionLog,
  type FlushStats,
  type HeuristicResolution,
  IdempotencyKeyTakenError,
  type ListPage,
  type ListQuery,
  LogUnusableError,
  WriteRefusedError,
} from './decision-log.js';
import { migratePostgres, quoted } from './postgres-schema.js';
import { fromRow, participantsJson, type TxRow } from './records.js';
import { type Pending, WriteQueue } from './write-queue.js';

export interface PostgresLogOptions {
  /** postgres://user:password@host:port/database; carries credentials, never repeated in a message. */
  readonly url: string;
  /** The PostgreSQL schema commitd's tables live in. */
  readonly schema: string;
  /** Most records one batch carries; more wait for the next batch. */
  readonly batchRecordsMax: number;
  /** How long lazy records may wait for a forced one to ride along with. */
  readonly lazyFlushDelayMs: number;
  /** Connections for reads and compaction, beside the one writer. */
  readonly readConnectionsMax?: number;
  /** Bound on connecting; a store that does not answer within it counts as unreachable. */
  readonly connectTimeoutMs?: number;
  /** Bound on one statement, on the server (statement_timeout). */
  readonly statementTimeoutMs?: number;
  /** With several instances: every write is fenced by the epoch its shard is owned under (src/cluster). */
  readonly fence?: Fence;
  readonly onFlush?: (stats: FlushStats) => void;
  readonly onError?: (error: Error) => void;
}

/**
 * What fences this instance's writes: the epoch under which it owns each
 * shard. A record of a shard it does not own (or no longer under that epoch,
 * as the store says in the write's own transaction) is not written.
 */
export interface Fence {
  /** The instance's id, the shards table's owner column. */
  readonly ownerId: string;
  /** The epoch this instance owns the shard under; null when it does not own it. */
  epochOf(shard: number): number | null;
  /** The store said the shard is no longer this instance's under that epoch. */
  lost(shard: number, epoch: number): void;
  /** A record the store did not take (WriteRefusedError's reasons); its forced writers hear the error. */
  refused(tx: Transaction, reason: 'fenced' | 'decided'): void;
}

/** What one batch's statement reports: the rows it wrote, and the (shard, epoch) fences that held, as `shard:epoch`. */
interface Written {
  readonly ids: ReadonlySet<string>;
  readonly fencesHeld: ReadonlySet<string>;
  /** New transactions left out: another transaction holds their idempotency key. */
  readonly keyTaken: ReadonlySet<string>;
}

/** A batch whose COMMIT may or may not have happened: the connection went while it was on its way. */
interface Unverified {
  readonly batch: Pending[];
  readonly history: History;
  readonly token: string;
  readonly startedAt: number;
}

/** History entries by transaction, queued or in a batch, with the epoch they were queued under (as records). */
type History = Map<string, { epoch: number | null; entries: HistoryEntry[] }>;

const READ_CONNECTIONS_DEFAULT = 4;
const CONNECT_TIMEOUT_MS_DEFAULT = 5_000;
const STATEMENT_TIMEOUT_MS_DEFAULT = 10_000;
/** The client gives up on an answer this long after the server would have cancelled the statement. */
const CLIENT_GRACE_MS = 5_000;
/** How often lazy records are retried while the store cannot be reached. */
const RETRY_DELAY_MS = 250;
/** Waiting for a lost writer session to end before its batch's fate is read: polls and their spacing. */
const SESSION_END_POLLS_MAX = 50;
const SESSION_END_POLL_MS = 100;
const CLOSE_TIMEOUT_MS = 5_000;

/** SQLSTATE classes of failures that may pass: connection, resources, operator intervention, system, rollbacks. */
const TRANSIENT_CLASSES = new Set(['08', '53', '57', '58', '40']);
/** A read-only transaction: a standby, or a primary being demoted during a failover. */
const READ_ONLY_SQL_TRANSACTION = '25006';

/** int8 as a number: every bigint here is milliseconds or a count, far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export class PostgresLog implements DecisionLog {
  private readonly s: string;
  private readonly pool: pg.Pool;
  private readonly writerId = `${process.pid}-${Math.random().toString(36).slice(2, 12)}`;
  private writer: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private readonly queue: WriteQueue;
  private unverified: Unverified | null = null;
  /** History entries not yet written, by transaction: they ride along with the next batch. */
  private pendingHistory: History = new Map();
  /** The history a flush is writing, until it has settled (written, or queued again). */
  private historyInFlight: { readonly txIds: ReadonlySet<string>; readonly done: Promise<void> } | null = null;
  /** Batches run one after the other on this chain; `running` counts those queued on it. */
  private chain: Promise<unknown> = Promise.resolve();
  private running = 0;
  private tokens = 0;
  private closed = false;

  /** Connects, creates or migrates the schema (refusing a newer one), and returns the open store. */
  static async open(options: PostgresLogOptions): Promise<PostgresLog> {
    const log = new PostgresLog(options);
    try {
      const writer = await log.connectedWriter();
      await migratePostgres(writer, options.schema, log.where());
    } catch (error) {
      await log.end();
      if (error instanceof LogUnusableError) throw error;
      throw new LogUnusableError(`cannot use the decision store ${log.where()}: ${(error as Error).message}`);
    }
    return log;
  }

  private constructor(private readonly options: PostgresLogOptions) {
    this.queue = new WriteQueue({
      due: () => this.flushScheduledBatch(),
      admit: (tx) => {
        if (this.closed) throw new LogUnusableError('the decision store is closed');
        return this.epochOf(tx.id);
      },
      lazyFlushDelayMs: options.lazyFlushDelayMs,
      batchRecordsMax: options.batchRecordsMax,
    });
    this.s = quoted(options.schema);
    this.pool = new pg.Pool({
      ...this.connectionConfig('commitd-reader'),
      max: options.readConnectionsMax ?? READ_CONNECTIONS_DEFAULT,
    });
    // An idle connection that breaks is dropped by the pool; the next read opens another.
    this.pool.on('error', (error) => this.options.onError?.(error));
  }

  private connectionConfig(applicationName: string): pg.ClientConfig {
    const statementTimeoutMs = this.options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS_DEFAULT;
    return {
      connectionString: this.options.url,
      application_name: applicationName,
      // Set for every session explicitly, whatever the server's default:
      // a COMMIT returns once its WAL is flushed, so an acknowledged decision
      // survives a crash of PostgreSQL.
      options: `-c synchronous_commit=on -c statement_timeout=${statementTimeoutMs}`,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
      query_timeout: statementTimeoutMs + CLIENT_GRACE_MS,
      keepAlive: true,
      types,
    };
  }

  /** Where the store is, for messages: host, port, database and schema, never the credentials. */
  private where(): string {
    try {
      const u = new URL(this.options.url);
      return `${u.host}${u.pathname} (schema ${this.options.schema})`;
    } catch {
      return `(schema ${this.options.schema})`;
    }
  }

  private get writerName(): string {
    return `commitd-writer-${this.writerId}`;
  }

  private connectedWriter(): Promise<pg.Client> {
    if (this.writer) return Promise.resolve(this.writer);
    this.connecting ??= (async () => {
      const client = new pg.Client(this.connectionConfig(this.writerName));
      client.on('error', (error) => {
        // The session is gone; the next batch opens another.
        if (this.writer === client) this.writer = null;
        this.options.onError?.(error);
      });
      try {
        await client.connect();
      } catch (error) {
        client.end().catch(() => {});
        throw error;
      }
      this.writer = client;
      return client;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private dropWriter(): void {
    const writer = this.writer;
    this.writer = null;
    writer?.end().catch(() => {});
  }

  writeForced(tx: Transaction): Promise<void> {
    return this.queue.writeForced(tx);
  }

  writeLazy(tx: Transaction, onWritten?: () => void): void {
    this.queue.writeLazy(tx, onWritten);
  }

  /** The epoch this instance owns the transaction's shard under now; null when it does not (or no fence). */
  private epochOf(txId: string): number | null {
    const fence = this.options.fence;
    if (fence === undefined) return null;
    const shard = shardOfId(txId);
    return shard === null ? null : fence.epochOf(shard);
  }

  private schedule(when: 'soon' | 'later', delayMs?: number): void {
    this.queue.schedule(when, delayMs);
  }

  private flushScheduledBatch(): void {
    // A batch in flight reschedules what is queued once it is done.
    if (this.closed || this.running > 0) return;
    void this.exclusive(() => this.flushBatch()).catch((error) => this.options.onError?.(error as Error));
  }

  /** Runs `fn` after every batch before it; reschedules what is still queued once the last one is done. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.running++;
    const run = this.chain.then(fn);
    this.chain = run
      .catch(() => {})
      .finally(() => {
        this.running--;
        if (this.running > 0 || this.closed) return;
        if (!this.hasWork()) return;
        if (this.queue.hasForced()) this.schedule('soon');
        else this.schedule('later', this.writer ? this.options.lazyFlushDelayMs : RETRY_DELAY_MS);
      });
    return run;
  }

  appendHistory(txId: string, entries: readonly HistoryEntry[]): void {
    if (entries.length === 0) return;
    if (this.closed) throw new LogUnusableError('the decision store is closed');
    const epoch = this.epochOf(txId);
    const queued = this.pendingHistory.get(txId);
    // Entries queued under another ownership are that ownership's: they go.
    if (queued && queued.epoch === epoch) queued.entries.push(...entries);
    else this.pendingHistory.set(txId, { epoch, entries: [...entries] });
    this.schedule('later');
  }

  async history(txId: string): Promise<HistoryEntry[]> {
    const inFlight = this.historyInFlight;
    if (inFlight?.txIds.has(txId)) await inFlight.done;
    const { rows } = await this.pool.query<{ entries: string }>(
      `SELECT entries FROM ${this.s}.history WHERE tx_id = $1 ORDER BY seq`,
      [txId],
    );
    const written = rows.flatMap((r) => JSON.parse(r.entries) as HistoryEntry[]);
    return [...written, ...(this.pendingHistory.get(txId)?.entries ?? [])];
  }

  async resolveHeuristics(
    txId: string,
    participant: string | null,
    resolution: Omit<HeuristicResolution, 'participant'>,
  ): Promise<string[]> {
    const { rows } = await this.pool.query<{ participant: string }>(
      `UPDATE ${this.s}.heuristics SET resolved_at_ms = $3, note = $4, resolved_by = $5
       WHERE tx_id = $1 AND resolved_at_ms IS NULL AND ($2::text IS NULL OR participant = $2)
       RETURNING participant`,
      [
        txId,
        participant,
        resolution.atMs,
        resolution.note,
        resolution.by === null ? null : JSON.stringify(resolution.by),
      ],
    );
    return rows.map((r) => r.participant).sort();
  }

  async resolutions(txId: string): Promise<HeuristicResolution[]> {
    const { rows } = await this.pool.query<{
      participant: string;
      resolved_at_ms: number;
      note: string;
      resolved_by: string | null;
    }>(
      `SELECT participant, resolved_at_ms, note, resolved_by FROM ${this.s}.heuristics
       WHERE tx_id = $1 AND resolved_at_ms IS NOT NULL ORDER BY participant`,
      [txId],
    );
    return rows.map((r) => ({
      participant: r.participant,
      atMs: r.resolved_at_ms,
      note: r.note,
      by: r.resolved_by === null ? null : (JSON.parse(r.resolved_by) as Actor),
    }));
  }

  async claimDeploymentId(proposed: string): Promise<string> {
    // Instances starting together may both propose: the first insert wins and
    // every one reads the row that stands.
    await this.pool.query(`INSERT INTO ${this.s}.deployment (one, id) VALUES (true, $1) ON CONFLICT (one) DO NOTHING`, [
      proposed,
    ]);
    const { rows } = await this.pool.query<{ id: string }>(`SELECT id FROM ${this.s}.deployment`);
    const id = rows[0]?.id;
    if (id === undefined) throw new LogUnusableError('the decision store lost its deployment identity');
    return id;
  }

  async unresolvedHeuristics(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `SELECT count(*) AS n FROM ${this.s}.heuristics WHERE resolved_at_ms IS NULL`,
    );
    return rows[0]?.n ?? 0;
  }

  async flush(): Promise<void> {
    // Bounded: records that fail and go back in the queue wait for a later flush.
    let first: Error | null = null;
    for (let n = Math.max(1, Math.ceil(this.queue.pending.size / this.options.batchRecordsMax)); n > 0; n--) {
      try {
        await this.exclusive(() => this.flushBatch());
      } catch (error) {
        first ??= error as Error;
      }
    }
    if (first) throw first;
  }

  /** Writes up to batchRecordsMax queued snapshots in one statement, after settling a batch of unknown fate. */
  private async flushBatch(): Promise<void> {
    if (!this.hasWork()) return;
    let writer: pg.Client;
    try {
      writer = await this.connectedWriter();
      if (this.unverified) await this.verify(writer, this.unverified);
    } catch (error) {
      // The store cannot be reached: nothing queued can be written now.
      // Forced writers hear at once rather than wait for it to come back.
      const batch = this.take();
      this.notWritten(batch, unreachable(error, this.where()), true);
      throw unreachable(error, this.where());
    }
    const batch = this.ownedOnly(this.take());
    const history = this.ownedHistory(this.pendingHistory);
    this.pendingHistory = new Map();
    if (batch.length === 0 && history.size === 0) return;
    // Until this batch has settled its history is in neither the store nor
    // pendingHistory: a reader of one of these transactions waits for it.
    let settled!: () => void;
    this.historyInFlight = {
      txIds: new Set(history.keys()),
      done: new Promise((r) => {
        settled = r;
      }),
    };
    try {
      const token = `${this.writerId}:${++this.tokens}`;
      const startedAt = performance.now();
      try {
        const written = await this.write(writer, batch, history, token);
        this.settle(batch, written, startedAt);
        return;
      } catch (error) {
        if (!(error instanceof pg.DatabaseError)) {
          // No answer from the server: the COMMIT may have happened. Nobody
          // hears until a new session has read the marker.
          this.unverified = { batch, history, token, startedAt };
          this.dropWriter();
          throw unreachable(error, this.where());
        }
        // History waits for the next batch, ahead of anything queued since.
        this.requeueHistory(history);
        if (batch.length === 0) throw error;
        if (isTransient(error) || batch.length === 1) {
          this.notWritten(batch, error, isTransient(error));
          throw error;
        }
      }
      // One record the store refuses must not sink the rest of the batch:
      // write them one by one, so only what really cannot be written fails.
      let first: Error | null = null;
      for (const entry of batch) {
        const single = `${this.writerId}:${++this.tokens}`;
        try {
          const written = await this.write(writer, [entry], new Map(), single);
          this.settle([entry], written, performance.now());
        } catch (error) {
          if (!(error instanceof pg.DatabaseError)) {
            this.unverified = { batch: [entry], history: new Map(), token: single, startedAt };
            this.dropWriter();
            // The others wait for the next batch, behind the unknown one.
            for (const rest of batch.slice(batch.indexOf(entry) + 1)) this.requeue(rest, true);
            throw unreachable(error, this.where());
          }
          this.notWritten([entry], error, isTransient(error));
          first ??= error;
        }
      }
      if (first) throw first;
    } finally {
      this.historyInFlight = null;
      settled();
    }
  }

  private hasWork(): boolean {
    return this.queue.pending.size > 0 || this.pendingHistory.size > 0 || this.unverified !== null;
  }

  private requeueHistory(history: History): void {
    for (const [txId, queued] of this.pendingHistory) {
      const earlier = history.get(txId);
      history.set(
        txId,
        earlier && earlier.epoch === queued.epoch
          ? { epoch: queued.epoch, entries: [...earlier.entries, ...queued.entries] }
          : queued,
      );
    }
    this.pendingHistory = history;
  }

  private take(): Pending[] {
    return this.queue.take(this.options.batchRecordsMax);
  }

  /**
   * One statement, so one transaction and one COMMIT: the rows, their
   * payloads, contradicting heuristics, history chunks and the marker.
   */
  private async write(writer: pg.Client, batch: Pending[], history: History, token: string): Promise<Written> {
    const c: unknown[][] = Array.from({ length: 13 }, () => []);
    const payloads: string[][] = [[], [], []];
    const heuristics: unknown[][] = [[], [], [], []];
    for (const { tx } of batch) {
      const row = [
        tx.id,
        tx.state,
        tx.outcome,
        tx.abortReason,
        tx.oneShot,
        tx.createdAtMs,
        tx.deadlineMs,
        tx.decidedAtMs,
        tx.finishedAtMs,
        tx.idempotencyKey,
        tx.requestHash,
        tx.metadataJson,
        participantsJson(tx),
      ];
      for (const [i, value] of row.entries()) (c[i] as unknown[]).push(value);
      if (tx.outcome !== null) {
        for (const p of tx.participants) {
          if (p.heuristic === null || p.heuristic === tx.outcome) continue;
          for (const [i, value] of [tx.id, p.name, p.heuristic, tx.finishedAtMs ?? tx.decidedAtMs].entries()) {
            (heuristics[i] as unknown[]).push(value);
          }
        }
      }
      // Payloads can only be added while the transaction is active.
      if (tx.state !== 'active') continue;
      for (const p of tx.participants) {
        if (p.payloadJson === null) continue;
        payloads[0]?.push(tx.id);
        payloads[1]?.push(p.name);
        payloads[2]?.push(p.payloadJson);
      }
    }
    const s = this.s;
    const fenced = this.options.fence !== undefined;
    // The (shard, epoch) pairs this batch writes under.
    const pairs = new Map<string, [number, number]>();
    const note = (txId: string, epoch: number | null) => {
      const shard = shardOfId(txId);
      if (shard !== null && epoch !== null) pairs.set(`${shard}:${epoch}`, [shard, epoch]);
    };
    for (const e of batch) note(e.tx.id, e.epoch);
    for (const [txId, h] of history) note(txId, h.epoch);
    const fences = [...pairs.values()];
    const { rows } = await writer.query<{ marker: string }>(
      `WITH fence AS (
         -- The shards this batch writes into, locked (FOR SHARE) for as long as
         -- the batch's transaction lasts, and only under the epoch this instance
         -- owns them by. A takeover (an UPDATE of the row) waits for the lock,
         -- so it sees this batch once it commits; after a takeover the epoch
         -- no longer matches and nothing of that shard is written.
         -- Locked in shard order: every statement that locks shard rows does,
         -- so two of them never wait for each other in a circle.
         SELECT sh.shard, sh.epoch FROM ${s}.shards sh
         JOIN unnest($26::int[], $27::bigint[]) AS f(shard, epoch) ON sh.shard = f.shard AND sh.epoch = f.epoch
         WHERE sh.owner = $28
         ORDER BY sh.shard
         FOR SHARE OF sh
       ), input AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::bigint[],
           $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[], $25::text[],
           $30::bigint[], $32::text[], $33::text[])
           AS i(id, state, outcome, abort_reason, one_shot, created_at_ms, deadline_ms, decided_at_ms,
             finished_at_ms, idempotency_key, request_hash, metadata, participants, trace_parent, epoch, caller, began_by)
         -- Each record under the epoch it was queued under, and no other.
         WHERE NOT $29 OR (${SHARD_SQL('i.id')}, i.epoch) IN (SELECT shard, epoch FROM fence)
       ), fresh AS (
         -- A transaction's first record. Another instance may have begun one
         -- with the same (scoped) idempotency key at the same moment: the
         -- insert waits for that one's statement and, once it committed,
         -- leaves this row out (key_taken) instead of failing the batch.
         INSERT INTO ${s}.transactions (id, state, outcome, abort_reason, one_shot, created_at_ms, deadline_ms,
           decided_at_ms, finished_at_ms, idempotency_key, request_hash, metadata, participants, trace_parent, caller,
           began_by)
         SELECT id, state, outcome, abort_reason, one_shot, created_at_ms, deadline_ms, decided_at_ms,
           finished_at_ms, idempotency_key, request_hash, metadata, participants, trace_parent, caller, began_by FROM input i
         WHERE NOT EXISTS (SELECT 1 FROM ${s}.transactions t WHERE t.id = i.id)
         ON CONFLICT DO NOTHING
         RETURNING id
       ), known AS (
         UPDATE ${s}.transactions t SET state = i.state, outcome = i.outcome, abort_reason = i.abort_reason,
           decided_at_ms = i.decided_at_ms, finished_at_ms = i.finished_at_ms, participants = i.participants
         FROM input i
         -- The decision is an insert-if-absent: a row holding the other
         -- outcome is not touched, and the writer adopts the stored one.
         WHERE t.id = i.id AND (t.outcome IS NULL OR t.outcome = i.outcome)
         RETURNING t.id
       ), tx AS (
         SELECT id FROM fresh UNION ALL SELECT id FROM known
       ), key_taken AS (
         SELECT i.id FROM input i
         WHERE i.idempotency_key IS NOT NULL AND i.id NOT IN (SELECT id FROM fresh)
           AND NOT EXISTS (SELECT 1 FROM ${s}.transactions t WHERE t.id = i.id)
       ), payloads AS (
         INSERT INTO ${s}.payloads (tx_id, name, payload)
         SELECT * FROM unnest($14::text[], $15::text[], $16::text[]) AS p(tx_id, name, payload)
         WHERE p.tx_id IN (SELECT id FROM tx)
         ON CONFLICT DO NOTHING
         RETURNING 1
       ), finished_payloads AS (
         -- Finished (every participant answered, a heuristic included): its
         -- payloads are never read again, and a transaction with an
         -- unresolved heuristic outlives retention (issue 23).
         DELETE FROM ${s}.payloads
         WHERE tx_id IN (SELECT id FROM input WHERE finished_at_ms IS NOT NULL)
           AND tx_id IN (SELECT id FROM tx)
       ), heuristics AS (
         INSERT INTO ${s}.heuristics (tx_id, participant, heuristic, reported_at_ms)
         SELECT * FROM unnest($19::text[], $20::text[], $21::text[], $22::bigint[]) AS h(tx_id, participant, heuristic, at)
         WHERE h.tx_id IN (SELECT id FROM tx)
         ON CONFLICT DO NOTHING
         RETURNING 1
       ), history AS (
         -- Only with its transaction (in the store, or in this batch):
         -- entries still queued when it was compacted would otherwise stay
         -- behind for good.
         INSERT INTO ${s}.history (tx_id, seq, entries)
         SELECT h.tx_id, COALESCE((SELECT max(seq) FROM ${s}.history WHERE tx_id = h.tx_id), 0) + 1, h.entries
         FROM unnest($23::text[], $24::text[], $31::bigint[]) AS h(tx_id, entries, epoch)
         WHERE (NOT $29 OR (${SHARD_SQL('h.tx_id')}, h.epoch) IN (SELECT shard, epoch FROM fence))
           AND (h.tx_id = ANY($1::text[]) OR EXISTS (SELECT 1 FROM ${s}.transactions WHERE id = h.tx_id))
         RETURNING 1
       ), marker AS (
         -- What this batch wrote, in its own transaction: after a connection
         -- lost mid-COMMIT, the marker says whether it committed and what it took.
         INSERT INTO ${s}.flush_markers (writer, token)
         VALUES ($17, $18 || '|' || COALESCE((SELECT string_agg(id, ',') FROM tx), '')
           || '|' || COALESCE((SELECT string_agg(shard || ':' || epoch, ',') FROM fence), '')
           || '|' || COALESCE((SELECT string_agg(id, ',') FROM key_taken), ''))
         ON CONFLICT (writer) DO UPDATE SET token = excluded.token
         RETURNING token
       )
       SELECT (SELECT token FROM marker) AS marker`,
      [
        ...c,
        ...payloads,
        this.writerName,
        token,
        ...heuristics,
        [...history.keys()],
        [...history.values()].map((h) => JSON.stringify(h.entries)),
        batch.map(({ tx }) => tx.traceParent),
        fences.map(([shard]) => shard),
        fences.map(([, epoch]) => epoch),
        this.options.fence?.ownerId ?? null,
        fenced,
        batch.map((e) => e.epoch),
        [...history.values()].map((h) => h.epoch),
        batch.map(({ tx }) => tx.callerId ?? null),
        batch.map(({ tx }) => tx.beganBy),
      ],
    );
    return parseMarker(rows[0]?.marker ?? '', token) ?? { ids: new Set(), fencesHeld: new Set(), keyTaken: new Set() };
  }

  /**
   * Keeps the records queued under an epoch (this instance owned their shard
   * then); the others are refused at once: nothing of them may be written.
   * Without a fence, everything.
   */
  private ownedOnly(batch: Pending[]): Pending[] {
    if (this.options.fence === undefined) return batch;
    const owned: Pending[] = [];
    for (const entry of batch) {
      if (entry.epoch === null) this.refuse(entry, 'fenced');
      else owned.push(entry);
    }
    return owned;
  }

  /** History queued under an epoch; the rest goes with its transaction's ownership. */
  private ownedHistory(history: History): History {
    if (this.options.fence === undefined) return history;
    return new Map([...history].filter(([, h]) => h.epoch !== null));
  }

  /** After a batch committed: its writers hear, except those whose record the store did not take. */
  private settle(batch: Pending[], written: Written, startedAt: number): void {
    const taken: Pending[] = [];
    const lost = new Map<string, [number, number]>();
    for (const entry of batch) {
      if (written.ids.has(entry.tx.id)) {
        taken.push(entry);
        continue;
      }
      if (written.keyTaken.has(entry.tx.id)) {
        const error = new IdempotencyKeyTakenError(entry.tx.id);
        for (const w of entry.waiters) w.reject(error);
        continue;
      }
      const shard = shardOfId(entry.tx.id) ?? -1;
      const fence = `${shard}:${entry.epoch}`;
      const fenced = this.options.fence !== undefined && !written.fencesHeld.has(fence);
      if (fenced && entry.epoch !== null) lost.set(fence, [shard, entry.epoch]);
      this.refuse(entry, fenced ? 'fenced' : 'decided');
    }
    for (const [shard, epoch] of lost.values()) this.options.fence?.lost(shard, epoch);
    this.written(taken, startedAt);
  }

  private refuse(entry: Pending, reason: 'fenced' | 'decided'): void {
    const error = new WriteRefusedError(entry.tx.id, reason);
    for (const w of entry.waiters) w.reject(error);
    this.options.fence?.refused(entry.tx, reason);
  }

  /**
   * Settles a batch whose COMMIT may have happened: ends the lost session
   * first (until it is gone, its transaction might still commit), then reads
   * the marker, which only that batch's transaction could have set to its token.
   */
  private async verify(writer: pg.Client, unverified: Unverified): Promise<void> {
    for (let n = 0; ; n++) {
      const { rows } = await writer.query<{ alive: number }>(
        `SELECT count(pg_terminate_backend(pid)) AS alive FROM pg_stat_activity
         WHERE application_name = $1 AND pid <> pg_backend_pid()`,
        [this.writerName],
      );
      if ((rows[0]?.alive ?? 0) === 0) break;
      if (n >= SESSION_END_POLLS_MAX) throw new Error('the lost writer session does not end');
      await new Promise((resolve) => setTimeout(resolve, SESSION_END_POLL_MS));
    }
    const { rows } = await writer.query<{ token: string }>(
      `SELECT token FROM ${this.s}.flush_markers WHERE writer = $1`,
      [this.writerName],
    );
    this.unverified = null;
    const written = parseMarker(rows[0]?.token ?? '', unverified.token);
    if (written !== null) {
      this.settle(unverified.batch, written, unverified.startedAt);
      return;
    }
    this.requeueHistory(unverified.history);
    this.notWritten(
      unverified.batch,
      new Error('the connection was lost before the batch committed; it did not'),
      true,
    );
  }

  private written(batch: Pending[], startedAt: number): void {
    this.options.onFlush?.({
      durationMs: performance.now() - startedAt,
      records: batch.length,
      forced: batch.some((e) => e.forced),
    });
    for (const entry of batch) {
      for (const w of entry.waiters) w.resolve();
      for (const cb of entry.callbacks) cb();
    }
  }

  /**
   * Records that did not commit. Forced writers hear (their caller gets a 503;
   * nothing was promised) and their snapshot is dropped: the coordinator goes
   * on from the state before it. A lazy record goes back in the queue, behind
   * anything newer, when the failure may pass; one the store refuses outright
   * would fail forever and is dropped, loudly, as in the SQLite log.
   */
  private notWritten(batch: Pending[], error: Error, transient: boolean): void {
    const unwritable = new LogUnusableError(`the decision store cannot be written: ${error.message}`);
    for (const entry of batch) {
      for (const w of entry.waiters) w.reject(unwritable);
      if (entry.forced) continue;
      if (transient) this.requeue(entry, false);
      else {
        this.options.onError?.(
          new LogUnusableError(`dropped a record of ${entry.tx.id} the store refuses: ${error.message}`),
        );
      }
    }
  }

  /**
   * Puts a record back in the queue, behind anything newer of its
   * transaction. `keepWaiters`: nobody was told about it yet, so its forced
   * writers wait for the next batch.
   */
  private requeue(entry: Pending, keepWaiters: boolean): void {
    const waiters = keepWaiters ? entry.waiters : [];
    const newer = this.queue.pending.get(entry.tx.id);
    if (newer === undefined) {
      this.queue.pending.set(entry.tx.id, { ...entry, forced: keepWaiters && entry.forced, waiters });
      return;
    }
    newer.forced ||= keepWaiters && entry.forced;
    newer.waiters.push(...waiters);
  }

  async get(id: string): Promise<Transaction | undefined> {
    const { rows } = await this.pool.query<TxRow>(`SELECT * FROM ${this.s}.transactions WHERE id = $1`, [id]);
    return rows[0] && fromRow(rows[0], null);
  }

  async findByIdempotencyKey(key: string): Promise<Transaction | undefined> {
    // text cannot hold NUL, so no key stored here has one (the SQLite log's
    // keys of older builds do: idempotency-keys.ts); asked, it would fail.
    if (key.includes('\u0000')) return undefined;
    const { rows } = await this.pool.query<TxRow>(`SELECT * FROM ${this.s}.transactions WHERE idempotency_key = $1`, [
      key,
    ]);
    if (rows[0]) return fromRow(rows[0], null);
    const kept = await this.pool.query<{ snapshot: string }>(
      `SELECT snapshot FROM ${this.s}.idempotency_keys WHERE idempotency_key = $1`,
      [key],
    );
    const snapshot = kept.rows[0]?.snapshot;
    return snapshot === undefined ? undefined : fromRow(JSON.parse(snapshot) as TxRow, null);
  }

  async list(query: ListQuery): Promise<ListPage> {
    const { rows } = await this.pool.query<TxRow>(
      `SELECT * FROM ${this.s}.transactions
       WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR id < $2)
         AND ($4::bigint IS NULL OR created_at_ms < $4)
         AND ($5::text IS NULL OR EXISTS (
           SELECT 1 FROM json_array_elements(participants::json) p WHERE p->>'name' = $5))
         AND (NOT $6 OR id IN (SELECT tx_id FROM ${this.s}.heuristics WHERE resolved_at_ms IS NULL))
       ORDER BY id DESC LIMIT $3`,
      [
        query.state,
        query.after,
        query.limit + 1,
        query.createdBeforeMs ?? null,
        query.participant ?? null,
        query.heuristicUnresolved === true,
      ],
    );
    const more = rows.length > query.limit;
    const page = more ? rows.slice(0, query.limit) : rows;
    return {
      transactions: page.map((r) => fromRow(r, null)),
      next: more ? (page[page.length - 1]?.id ?? null) : null,
    };
  }

  async loadUnfinished(shards?: readonly number[]): Promise<Transaction[]> {
    const { rows } = await this.pool.query<TxRow>(
      `SELECT * FROM ${this.s}.transactions
       WHERE finished_at_ms IS NULL AND ($1::int[] IS NULL OR ${SHARD_SQL('id')} = ANY($1::int[]))
       ORDER BY id`,
      [shards ?? null],
    );
    // Payloads only for active transactions, the only ones that may still
    // send prepares: a store full of large ones cannot fill the heap at start.
    const active = rows.filter((r) => r.state === 'active').map((r) => r.id);
    const payloads = new Map<string, Map<string, string>>();
    if (active.length > 0) {
      const found = await this.pool.query<{ tx_id: string; name: string; payload: string }>(
        `SELECT tx_id, name, payload FROM ${this.s}.payloads WHERE tx_id = ANY($1::text[])`,
        [active],
      );
      for (const p of found.rows) {
        const of = payloads.get(p.tx_id) ?? new Map<string, string>();
        of.set(p.name, p.payload);
        payloads.set(p.tx_id, of);
      }
    }
    return rows.map((row) => fromRow(row, row.state === 'active' ? (payloads.get(row.id) ?? new Map()) : null));
  }

  async keptOutcome(id: string): Promise<'commit' | 'forgotten' | null> {
    // One statement, one snapshot: an expiry moves an id out of committed
    // and the horizon over it in one transaction.
    const { rows } = await this.pool.query<{ committed: boolean; forgotten: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM ${this.s}.committed WHERE id = $1) AS committed,
         EXISTS (SELECT 1 FROM ${this.s}.forgotten_horizon WHERE through_id >= $1) AS forgotten`,
      [id],
    );
    if (rows[0]?.committed) return 'commit';
    return rows[0]?.forgotten ? 'forgotten' : null;
  }

  /**
   * The shards whose transactions this instance compacts, with the epoch it
   * owns each under (null: all, without a fence). Every instance judges
   * retention on its own clock; owned shards only, and only while the store
   * still says so (the statement checks the epochs), so that one whose clock
   * runs ahead forgets early only what it drives itself, never the others'
   * transactions, not even while it sleeps through a takeover.
   */
  private compactedShards(): { shards: number[]; epochs: number[] } | null {
    const fence = this.options.fence;
    if (fence === undefined) return null;
    const shards: number[] = [];
    const epochs: number[] = [];
    for (let shard = 0; shard < ID_SHARDS; shard++) {
      const epoch = fence.epochOf(shard);
      if (epoch === null) continue;
      shards.push(shard);
      epochs.push(epoch);
    }
    return { shards, epochs };
  }

  async compact(finishedBeforeMs: number, keysFinishedBeforeMs: number, maxRows: number): Promise<number> {
    const s = this.s;
    const owned = this.compactedShards();
    if (owned !== null && owned.shards.length === 0) return 0;
    // One statement: the rows go, their keys' snapshots and committed ids
    // stay, and an expired committed id moves the horizon, atomically.
    const { rows } = await this.pool.query<{ forgotten: number }>(
      `WITH owned AS (
         -- The shards this instance owns, by the store's word, under the
         -- epochs it believes: none of a shard taken over meanwhile.
         SELECT sh.shard FROM ${s}.shards sh
         JOIN unnest($4::int[], $5::bigint[]) AS o(shard, epoch) ON sh.shard = o.shard AND sh.epoch = o.epoch
         WHERE sh.owner = $6
       ), gone AS (
         DELETE FROM ${s}.transactions WHERE id IN (
           SELECT id FROM ${s}.transactions
           WHERE finished_at_ms IS NOT NULL AND finished_at_ms < $1
             AND ($4::int[] IS NULL OR ${SHARD_SQL('id')} IN (SELECT shard FROM owned))
             -- A transaction with an unresolved heuristic is kept until an operator resolves it.
             AND id NOT IN (SELECT tx_id FROM ${s}.heuristics WHERE resolved_at_ms IS NULL)
           LIMIT $3)
         RETURNING *
       ), committed AS (
         -- Every committed one, even one already past the keys' retention:
         -- its expiry (a later compaction) is what moves the horizon over it.
         INSERT INTO ${s}.committed (id, finished_at_ms)
         SELECT id, finished_at_ms FROM gone WHERE outcome = 'commit'
         ON CONFLICT (id) DO NOTHING
       ), expired_committed AS (
         DELETE FROM ${s}.committed WHERE id IN (
           SELECT id FROM ${s}.committed
           WHERE finished_at_ms < $2 AND ($4::int[] IS NULL OR ${SHARD_SQL('id')} IN (SELECT shard FROM owned))
           LIMIT $3)
         RETURNING id
       ), horizon AS (
         INSERT INTO ${s}.forgotten_horizon (one, through_id)
         SELECT true, max(id) FROM expired_committed HAVING count(*) > 0
         ON CONFLICT (one) DO UPDATE
           SET through_id = GREATEST(${s}.forgotten_horizon.through_id, excluded.through_id)
       ), kept AS (
         INSERT INTO ${s}.idempotency_keys (idempotency_key, finished_at_ms, snapshot)
         SELECT idempotency_key, finished_at_ms, row_to_json(gone)::text FROM gone
         WHERE idempotency_key IS NOT NULL AND finished_at_ms >= $2
         ON CONFLICT (idempotency_key) DO UPDATE
           SET finished_at_ms = excluded.finished_at_ms, snapshot = excluded.snapshot
       ), payloads AS (
         DELETE FROM ${s}.payloads WHERE tx_id IN (SELECT id FROM gone)
       ), history AS (
         DELETE FROM ${s}.history WHERE tx_id IN (SELECT id FROM gone)
       ), heuristics AS (
         DELETE FROM ${s}.heuristics WHERE tx_id IN (SELECT id FROM gone)
       ), expired AS (
         DELETE FROM ${s}.idempotency_keys WHERE idempotency_key IN (
           SELECT idempotency_key FROM ${s}.idempotency_keys WHERE finished_at_ms < $2 LIMIT $3)
       )
       SELECT count(*) AS forgotten FROM gone`,
      [
        finishedBeforeMs,
        keysFinishedBeforeMs,
        maxRows,
        owned?.shards ?? null,
        owned?.epochs ?? null,
        this.options.fence?.ownerId ?? null,
      ],
    );
    return rows[0]?.forgotten ?? 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const bound = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref());
    try {
      // What cannot be written now is lazy (forced writers were told): the
      // next start recovers from what the store holds.
      await Promise.race([this.flush(), bound]);
    } catch (error) {
      this.options.onError?.(error as Error);
    }
    this.closed = true;
    this.queue.cancel();
    const unknown = this.unverified;
    this.unverified = null;
    if (unknown) {
      const error = new LogUnusableError('the decision store was closed with a batch of unknown fate');
      for (const entry of unknown.batch) for (const w of entry.waiters) w.reject(error);
    }
    await this.end();
  }

  private async end(): Promise<void> {
    this.closed = true;
    const writer = this.writer;
    this.writer = null;
    await Promise.allSettled([writer?.end(), this.pool.end()]);
  }
}

/** The shard a transaction id names, in SQL (protocol/transaction-ids.ts: the digit after `tx_` and the time). */
function SHARD_SQL(idColumn: string): string {
  return `(strpos('${ALPHABET}', substr(${idColumn}, ${SHARD_DIGIT_INDEX + 1}, 1)) - 1)`;
}

/**
 * A flush marker `token|ids|shard:epoch,…` read back: null when it is not
 * the token's (that batch did not commit), else what it wrote and the
 * fences that held.
 */
function parseMarker(marker: string, token: string): Written | null {
  const [markerToken, ids = '', fences = '', keyTaken = ''] = marker.split('|');
  if (markerToken !== token) return null;
  const set = (list: string) => new Set(list === '' ? [] : list.split(','));
  return { ids: set(ids), fencesHeld: set(fences), keyTaken: set(keyTaken) };
}

function isTransient(error: pg.DatabaseError): boolean {
  const code = error.code ?? '';
  return TRANSIENT_CLASSES.has(code.slice(0, 2)) || code === READ_ONLY_SQL_TRANSACTION;
}

function unreachable(error: unknown, where: string): Error {
  return new Error(`the decision store ${where} cannot be reached: ${(error as Error).message}`);
}
