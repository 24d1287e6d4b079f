// The PostgreSQL decision store's schema, in a schema of its own (default
// `commitd`), versioned in its schema_version table: migration i takes it from
// version i to i + 1. Append only; never edit a released one. `$S` stands for
// the quoted schema name.

import type pg from 'pg';
import { LogUnusableError } from './decision-log.js';

export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE $S.transactions (
    -- COLLATE "C": ids are ordered byte by byte, as the list API pages them
    -- (and as SQLite does), whatever the database's collation.
    id              text COLLATE "C" PRIMARY KEY,
    state           text NOT NULL,
    outcome         text CHECK (outcome IN ('commit', 'abort')),
    abort_reason    text,
    one_shot        boolean NOT NULL,
    created_at_ms   bigint NOT NULL,
    deadline_ms     bigint NOT NULL,
    decided_at_ms   bigint,
    finished_at_ms  bigint,
    idempotency_key text UNIQUE,
    request_hash    text,
    metadata        text,
    -- the participants' mutable state as JSON text, as in the SQLite log
    participants    text NOT NULL
  );
  CREATE INDEX transactions_finished ON $S.transactions (finished_at_ms) WHERE finished_at_ms IS NOT NULL;

  CREATE TABLE $S.payloads (
    tx_id   text COLLATE "C" NOT NULL,
    name    text NOT NULL,
    payload text NOT NULL,
    PRIMARY KEY (tx_id, name)
  );

  CREATE TABLE $S.idempotency_keys (
    idempotency_key text PRIMARY KEY,
    finished_at_ms  bigint NOT NULL,
    snapshot        text NOT NULL
  );
  CREATE INDEX idempotency_keys_finished ON $S.idempotency_keys (finished_at_ms);

  -- Each writer's last batch, written in the batch's own transaction: after a
  -- connection lost while a COMMIT was on its way, the token says whether
  -- that batch committed.
  CREATE TABLE $S.flush_markers (
    writer text PRIMARY KEY,
    token  text NOT NULL
  );

  -- What operators look at (as in the SQLite log): a transaction's history
  -- in chunks, one per flush, appended, never rewritten; and heuristic
  -- outcomes that contradict the decision, until someone resolves them.
  CREATE TABLE $S.history (
    tx_id   text COLLATE "C" NOT NULL,
    seq     integer NOT NULL,
    entries text NOT NULL,
    PRIMARY KEY (tx_id, seq)
  );
  CREATE TABLE $S.heuristics (
    tx_id          text COLLATE "C" NOT NULL,
    participant    text NOT NULL,
    heuristic      text NOT NULL,
    reported_at_ms bigint NOT NULL,
    resolved_at_ms bigint,
    note           text,
    resolved_by    text,
    PRIMARY KEY (tx_id, participant)
  );
  CREATE INDEX heuristics_unresolved ON $S.heuristics (tx_id) WHERE resolved_at_ms IS NULL;

  -- The one rule 2PC cannot bend, checked once more where it is stored.
  CREATE FUNCTION $S.decision_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'a decision is never rewritten (% was %, not %)', OLD.id, OLD.outcome, NEW.outcome
      USING ERRCODE = 'integrity_constraint_violation';
  END $$;
  CREATE TRIGGER decision_is_final BEFORE UPDATE OF outcome ON $S.transactions
    FOR EACH ROW WHEN (OLD.outcome IS NOT NULL AND NEW.outcome IS DISTINCT FROM OLD.outcome)
    EXECUTE FUNCTION $S.decision_is_final();
  `,
  // 2: the begin's W3C traceparent, kept so that recovery's calls stay in the
  // client's trace (as the SQLite log's migration 5).
  `
  ALTER TABLE $S.transactions ADD COLUMN trace_parent text;
  `,
  // 3: several instances on one store (src/cluster). Shards of transactions
  // (the shard is a digit of the id), each owned by one instance under a
  // lease judged on this database's clock, with an epoch bumped on every
  // change of owner; every write is fenced by it. Instances say where they
  // are (their advertised URL) and that they are alive (seen_until).
  `
  CREATE TABLE $S.instances (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    -- its last heartbeat, and until when it counts (the lease), on this clock
    seen_at    timestamptz NOT NULL DEFAULT now(),
    seen_until timestamptz NOT NULL
  );
  CREATE TABLE $S.shards (
    shard       integer PRIMARY KEY,
    owner       text,
    epoch       bigint NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
  );
  INSERT INTO $S.shards (shard) SELECT generate_series(0, 31);
  -- A takeover loads the shard's unfinished transactions: a small index,
  -- however many finished ones the retention keeps.
  CREATE INDEX transactions_unfinished ON $S.transactions (id) WHERE finished_at_ms IS NULL;
  `,
  // The deployment's identity, in the name of every transaction commitd
  // prepares in a database (participants/databases/transaction-names.ts),
  // shared by every instance on the store. One row, written at the first
  // start of a build that knows it.
  `
  CREATE TABLE $S.deployment (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    id  text NOT NULL
  );
  `,
  // 5: the outcome of a compacted transaction (as the SQLite log's
  // migration 7): committed ids, kept as long as idempotency keys, and the
  // newest id that expired, below which an unknown id is "forgotten".
  `
  CREATE TABLE $S.committed (
    id             text COLLATE "C" PRIMARY KEY,
    finished_at_ms bigint NOT NULL
  );
  CREATE INDEX committed_finished ON $S.committed (finished_at_ms);
  CREATE TABLE $S.forgotten_horizon (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    through_id text COLLATE "C" NOT NULL
  );
  `,
  // 6: the caller that began a transaction (a token's id, or a client address),
  // so that the per-caller limits count it again after a restart or a
  // takeover (issue 23). Written with the begin, never changed; NULL before.
  `
  ALTER TABLE $S.transactions ADD COLUMN caller text;
  `,
  // 7: who began the transaction (its token's id), as the SQLite log's
  // migration 7: a client token reaches only the transactions it began.
  `
  ALTER TABLE $S.transactions ADD COLUMN began_by text;
  `,
];

export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;

/** A PostgreSQL schema name commitd accepts: plain, so that it needs no quoting in an operator's psql either. */
export const STORE_SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Creates or upgrades the schema in one transaction. The version row is
 * locked first, so that two commitd starting at once migrate one after the
 * other (a table lock, not an advisory lock: it holds on every database that
 * speaks PostgreSQL's protocol).
 *
 * The schema and the version table are created before that lock can be
 * taken, and `IF NOT EXISTS` does not serialize creations: of instances that
 * start together on an empty store, all but one fail on the catalog's unique
 * index (`duplicate key … pg_namespace_nspname_index`) once the first
 * commits. Nothing of theirs was kept (the whole transaction rolled back), so
 * they start over, and find the schema and the lock there. A retry keeps the
 * one-lock design (an advisory lock would serialize too, but not every
 * PostgreSQL-speaking database has them); every retry follows a creation
 * that committed, so a few are enough.
 */
export async function migratePostgres(client: pg.ClientBase, schema: string, where: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await migrateOnce(client, schema, where);
      return;
    } catch (error) {
      if (attempt >= CREATION_RACE_ATTEMPTS_MAX || !lostCreationRace(error)) throw error;
    }
  }
}

/** Attempts at a migration that lost a creation race; each loss follows another's creation that committed. */
const CREATION_RACE_ATTEMPTS_MAX = 5;

/** unique_violation (on the catalog), duplicate_schema, duplicate_table, duplicate_object. */
const CREATION_RACE_CODES = new Set(['23505', '42P06', '42P07', '42710']);

function lostCreationRace(error: unknown): boolean {
  return CREATION_RACE_CODES.has((error as { code?: string }).code ?? '');
}

async function migrateOnce(client: pg.ClientBase, schema: string, where: string): Promise<void> {
  const s = quoted(schema);
  await client.query('BEGIN');
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}.schema_version (
         one boolean PRIMARY KEY DEFAULT true CHECK (one),
         version integer NOT NULL
       )`,
    );
    await client.query(`LOCK TABLE ${s}.schema_version IN ACCESS EXCLUSIVE MODE`);
    const rows = (await client.query<{ version: number }>(`SELECT version FROM ${s}.schema_version`)).rows;
    const version = rows[0]?.version ?? 0;
    if (version > POSTGRES_SCHEMA_VERSION) {
      throw new LogUnusableError(
        `the decision store ${where} has schema version ${version}, newer than this commitd knows ` +
          `(${POSTGRES_SCHEMA_VERSION}); run the newer commitd that wrote it`,
      );
    }
    for (let v = version; v < POSTGRES_SCHEMA_VERSION; v++) {
      await client.query((POSTGRES_MIGRATIONS[v] as string).replaceAll('$S', s));
    }
    if (version < POSTGRES_SCHEMA_VERSION) {
      await client.query(
        `INSERT INTO ${s}.schema_version (one, version) VALUES (true, $1)
         ON CONFLICT (one) DO UPDATE SET version = excluded.version`,
        [POSTGRES_SCHEMA_VERSION],
      );
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

export function quoted(schema: string): string {
  return `"${schema.replaceAll('"', '""')}"`;
}
