import type Database from 'better-sqlite3';
import { LogUnusableError } from './decision-log.js';

// Migrations keyed on PRAGMA user_version: migration i takes the schema from
// version i to i + 1. Append only; never edit a released one.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE transactions (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    outcome         TEXT CHECK (outcome IN ('commit', 'abort')),
    abort_reason    TEXT,
    one_shot        INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    deadline_ms     INTEGER NOT NULL,
    decided_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    metadata        TEXT,
    -- the participants' mutable state as JSON: one row write per snapshot
    -- instead of one per participant; payloads, written once, live apart
    participants    TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX transactions_unfinished ON transactions (id) WHERE finished_at_ms IS NULL;
  CREATE INDEX transactions_finished ON transactions (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
  CREATE INDEX transactions_state ON transactions (state, id);

  CREATE TABLE payloads (
    tx_id   TEXT NOT NULL,
    name    TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (tx_id, name)
  ) WITHOUT ROWID;

  -- The one rule 2PC cannot bend, checked once more where it is stored.
  CREATE TRIGGER decision_is_final BEFORE UPDATE OF outcome ON transactions
  WHEN OLD.outcome IS NOT NULL AND NEW.outcome IS NOT OLD.outcome
  BEGIN SELECT RAISE(ABORT, 'a decision is never rewritten'); END;
  `,
  // 2: every index costs each of the three writes a transaction makes; these
  // two served only recovery at start and the list API's state filter, which
  // scan a table that compaction keeps to the retention window instead.
  // Measured: 90 -> 59 µs per committed transaction in the log (12 per flush).
  `
  DROP INDEX transactions_unfinished;
  DROP INDEX transactions_state;
  `,
  // 3: an idempotency key outlives its transaction's details. A client that
  // retries a day later must find the transaction its first try created, not
  // begin a second one and have the participants do the work twice. When a
  // finished transaction with a key is compacted, its row (without payloads)
  // moves here, kept for the keys' own, longer retention.
  `
  CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    finished_at_ms  INTEGER NOT NULL,
    snapshot        TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX idempotency_keys_finished ON idempotency_keys (finished_at_ms);

  -- From this version on an explicit transaction is written as preparing
  -- before any prepare leaves, and an active one is known to have sent none
  -- (its abort then calls nobody). One written active by an older commitd
  -- may have prepares out: recovery must abort it and tell its participants.
  UPDATE transactions SET state = 'preparing'
    WHERE state = 'active' AND one_shot = 0 AND participants != '[]';
  `,
  // 4: what operators look at. A transaction's history, in chunks: the
  // entries one flush carried, appended, never rewritten (an append costs
  // what it adds, not the whole history again), clustered by transaction.
  // And heuristic outcomes that contradict the decision, until a human
  // resolves them.
  `
  CREATE TABLE history (
    tx_id   TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    entries TEXT NOT NULL,
    PRIMARY KEY (tx_id, seq)
  ) WITHOUT ROWID;

  CREATE TABLE heuristics (
    tx_id          TEXT NOT NULL,
    participant    TEXT NOT NULL,
    heuristic      TEXT NOT NULL,
    reported_at_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    note           TEXT,
    resolved_by    TEXT,
    PRIMARY KEY (tx_id, participant)
  ) WITHOUT ROWID;
  CREATE INDEX heuristics_unresolved ON heuristics (tx_id) WHERE resolved_at_ms IS NULL;

  -- Heuristics an older commitd recorded only in the participants' state.
  INSERT OR IGNORE INTO heuristics (tx_id, participant, heuristic, reported_at_ms)
    SELECT t.id, json_extract(p.value, '$.name'), json_extract(p.value, '$.heuristic'),
           COALESCE(t.finished_at_ms, t.decided_at_ms, t.created_at_ms)
    FROM transactions t, json_each(t.participants) p
    WHERE t.outcome IS NOT NULL AND json_extract(p.value, '$.heuristic') IS NOT NULL
      AND json_extract(p.value, '$.heuristic') != t.outcome;
  `,
  // 5: the W3C traceparent a transaction was begun in, so that recovery after a
  // restart joins its trace. Written with the begin, never changed; NULL for
  // a transaction begun without one, and for every one written before.
  `
  ALTER TABLE transactions ADD COLUMN trace_parent TEXT;
  `,
  // 6: the deployment's identity, in the name of every transaction commitd
  // prepares in a database (participants/databases/transaction-names.ts).
  // One row, written at the first start of a build that knows it.
  `
  CREATE TABLE deployment (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id  TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 7: the outcome of a compacted transaction, so that the outcome inquiry
  // never answers abort for one that committed (docs/protocol.md). Only
  // committed ones, by id: an id the log does not hold and that is not here
  // did not commit. Kept as long as idempotency keys; the newest id that
  // expired is the horizon below which an unknown id is "forgotten".
  `
  CREATE TABLE committed (
    id             TEXT PRIMARY KEY,
    finished_at_ms INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX committed_finished ON committed (finished_at_ms);
  CREATE TABLE forgotten_horizon (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    through_id TEXT NOT NULL
  );
  `,
  // 8: the caller that began a transaction (a token's id, or a client address),
  // so that the per-caller limits count it again after a restart (issue 23).
  // Written with the begin, never changed; NULL for rows written before.
  `
  ALTER TABLE transactions ADD COLUMN caller TEXT;
  `,
  // 9: who began the transaction (its token's id, never the token): a
  // client token reaches only the transactions it began, after a restart
  // too. Written with the begin, never changed; NULL for one begun without
  // tokens, and for every one written before.
  `
  ALTER TABLE transactions ADD COLUMN began_by TEXT;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new LogUnusableError(
      `the decision log has schema version ${version}, newer than this commitd knows (${SCHEMA_VERSION}); ` +
        'run the newer commitd that wrote it',
    );
  }
  for (let v = version; v < SCHEMA_VERSION; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
