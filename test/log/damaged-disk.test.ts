// Damaged and hostile disks: the real service started on a decision log that
// was cut short, torn, overwritten, written by a newer commitd, left where it
// may not write, or (in process) on a disk that fills up. commitd must recover
// safely or refuse to start with exit code 4 and a message naming the problem
// and the file; it never presumes a commit it cannot read and never serves
// from a log it cannot use.
//
// What it does, case by case (each asserted below):
// - WAL cut anywhere (to nothing, inside its header, inside a frame's header
//   or page, exactly at a frame boundary, one byte short): it starts. SQLite
//   keeps the frames up to the last whole commit frame, so what survives is a
//   prefix of what clients were told, and each surviving record is recovered
//   as it was written (a durable commit is finished, an undecided one-shot
//   aborted, an explicit transaction left active or prepared). Nothing can
//   tell a cut WAL from one that ended there, so records cut off are simply
//   gone: 404, and the participants' inquiry answers "abort" (presumed
//   abort). A cut between a one-shot's begin and its decision aborts a
//   transaction its participants committed: they answer heuristic commit,
//   and commitd records and shows it.
// - Torn last page of the file: garbage or zeros over its second half, or
//   garbage over all of it: exit 4, "the decision log <file> failed its
//   integrity check: *** in database main *** ..." (quick_check's report; a
//   page SQLite cannot even read gives "is unusable: database disk image is
//   malformed"). Garbage only inside a record's bytes passes quick_check
//   (SQLite keeps no page checksums): commitd's own record check refuses it,
//   exit 4, naming the transaction (before that check it started and
//   answered 400 "The body is not valid JSON" for any read of the record).
//   Garbage only in the page's unused gap: nothing reads wrong, it starts
//   and serves every transaction exactly as before.
// - Newer schema (user_version): exit 4, "cannot use the decision log
//   <file>: the decision log has schema version N, newer than this commitd
//   knows (M)"; the file is left untouched.
// - A data directory or log file it may not write (run as `nobody`, since
//   root ignores permissions): exit 4, "the decision log <file> cannot be
//   written: <directory or file> is read-only for this process (EACCES)",
//   before listening; nothing is changed.
// - Full disk (SQLite's max_page_count on the log's connection, in process):
//   begin, commit, prepare, enlist and list answer 503 problem+json; nothing
//   is acknowledged that is not on disk; a transaction whose decision could
//   not be written is aborted (presumed abort), never answered 202; the
//   process stays up, works again once there is room, and after a restart
//   the log holds exactly what was acknowledged.

import { execFileSync, type spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { SCHEMA_VERSION } from '../../src/log/schema.js';
import { LOG_FILE } from '../../src/log/sqlite-log.js';
import { startHarness, tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { type Behavior, startParticipant, waitUntil } from '../support/participant.js';
import { FAST_SETTINGS, MAIN, runToExit, type Service, spawnService, startService } from '../support/service.js';

const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;
const LONG_TIMEOUT_MS = 600_000;

/** What a client was told, in the order it was told: the history a log must keep a prefix of. */
interface Milestone {
  readonly id: string;
  readonly what: 'begun' | 'prepared' | 'decided commit' | 'decided abort';
}

interface History {
  readonly ids: string[];
  readonly milestones: Milestone[];
}

const dirs: string[] = [];
function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

const a = await startParticipant();
const b = await startParticipant();
t.teardown(async () => {
  await a.close();
  await b.close();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});
const participants = [
  { name: 'orders', url: a.url, payload: { sku: 'A-1', quantity: 2 } },
  { name: 'payments', url: b.url },
];

/**
 * Runs a history on a fresh log and SIGKILLs the service, so the WAL still
 * holds every frame: committed one-shots (enough of them that the
 * transactions table spans several pages), one left active, one prepared, one
 * aborted by its client, one whose commit decision is durable but not yet
 * acknowledged by `payments`, and a last committed one-shot.
 */
async function makeKilledLog(dataDir: string): Promise<History> {
  let refuseCommits = false;
  let stuckTx: string | null = null;
  const refusing: Behavior = (m) =>
    m.action === 'commit' && (refuseCommits || m.txId === stuckTx) ? { status: 503, body: {} } : undefined;
  b.behavior = refusing;
  const s = await startService(dataDir);
  try {
    const milestones: Milestone[] = [];
    const oneShot = async (expected: number) => {
      const r = await call(s.url, 'POST', '/v1/transactions', { participants, commit: true });
      if (r.status !== expected) throw new Error(`one-shot commit answered ${r.status}: ${JSON.stringify(r.body)}`);
      milestones.push({ id: r.body.id, what: 'begun' }, { id: r.body.id, what: 'decided commit' });
      return r.body.id as string;
    };
    const begin = async () => {
      const r = await call(s.url, 'POST', '/v1/transactions', { participants, timeoutMs: LONG_TIMEOUT_MS });
      if (r.status !== 201) throw new Error(`begin answered ${r.status}: ${JSON.stringify(r.body)}`);
      milestones.push({ id: r.body.id, what: 'begun' });
      return r.body.id as string;
    };
    for (let i = 0; i < 24; i++) await oneShot(200);
    await begin();
    const prepared = await begin();
    if ((await call(s.url, 'POST', `/v1/transactions/${prepared}/prepare`)).status !== 200) throw new Error('prepare');
    milestones.push({ id: prepared, what: 'prepared' });
    const aborted = await begin();
    if ((await call(s.url, 'POST', `/v1/transactions/${aborted}/abort`)).status !== 200) throw new Error('abort');
    milestones.push({ id: aborted, what: 'decided abort' });
    refuseCommits = true;
    stuckTx = await oneShot(202);
    refuseCommits = false;
    await oneShot(200);
    // Let the last lazy records (the final 'committed' states) reach the WAL.
    await new Promise((r) => setTimeout(r, 200));
    return { ids: [...new Set(milestones.map((m) => m.id))], milestones };
  } finally {
    await s.kill('SIGKILL');
    b.behavior = null;
  }
}

/** Byte offsets at which each commit frame of a WAL file ends. */
function commitFrameEnds(wal: Buffer): number[] {
  const pageSize = wal.readUInt32BE(8);
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  const ends: number[] = [];
  for (let at = WAL_HEADER_BYTES; at + frameBytes <= wal.length; at += frameBytes) {
    // Bytes 4-7 of a frame header: the database size after a commit, 0 in other frames.
    if (wal.readUInt32BE(at + 4) !== 0) ends.push(at + frameBytes);
  }
  return ends;
}

interface StoredRow {
  id: string;
  state: string;
  outcome: string | null;
  abort_reason: string | null;
  one_shot: number;
}

/** What SQLite itself reads from a log, through a copy so the original stays as it is. */
function readLog(dataDir: string): Map<string, StoredRow> {
  const copy = scratch('commitd-oracle-');
  for (const f of fs.readdirSync(dataDir)) fs.copyFileSync(path.join(dataDir, f), path.join(copy, f));
  const db = new Database(path.join(copy, LOG_FILE));
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    const hasTable = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'transactions'").get() as {
      n: number;
    };
    if (hasTable.n === 0) return new Map();
    const rows = db.prepare('SELECT id, state, outcome, abort_reason, one_shot FROM transactions').all() as StoredRow[];
    return new Map(rows.map((r) => [r.id, r]));
  } finally {
    db.close();
  }
}

/** Where recovery must take a stored transaction (participants answer every phase-two message). */
function recovered(row: StoredRow): { state: string; outcome: string | null; abortReason: string | null } {
  switch (row.state) {
    case 'committing':
    case 'committed':
      return { state: 'committed', outcome: 'commit', abortReason: null };
    case 'aborting':
    case 'aborted':
      return { state: 'aborted', outcome: 'abort', abortReason: row.abort_reason };
    case 'prepared':
      return { state: 'prepared', outcome: null, abortReason: null };
    case 'active':
      if (row.one_shot === 0) return { state: 'active', outcome: null, abortReason: null };
      return { state: 'aborted', outcome: 'abort', abortReason: 'recovery' };
    default: // preparing: prepares may be out, no decision
      return { state: 'aborted', outcome: 'abort', abortReason: 'recovery' };
  }
}

/** Polls the list until nothing is on its way to an outcome; returns every transaction by id. */
async function settledView(s: Service): Promise<Map<string, any>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await call(s.url, 'GET', '/v1/transactions?limit=100');
    if (r.status !== 200) throw new Error(`list answered ${r.status}: ${JSON.stringify(r.body)}`);
    const view = new Map<string, any>(r.body.transactions.map((tx: any) => [tx.id, tx]));
    const moving = [...view.values()].filter((tx) => ['preparing', 'committing', 'aborting'].includes(tx.state));
    if (moving.length === 0) return view;
    if (Date.now() > deadline) throw new Error(`still moving: ${JSON.stringify(moving)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function commitsSent(ids: string[]): Map<string, number> {
  return new Map(ids.map((id) => [id, a.count('commit', id) + b.count('commit', id)]));
}

/** Deterministic garbage. */
function garbage(bytes: number, seed: string): Buffer {
  const out = Buffer.alloc(bytes);
  for (let at = 0, i = 0; at < bytes; at += 32, i++) {
    crypto.createHash('sha256').update(`${seed}:${i}`).digest().copy(out, at);
  }
  return out;
}

function overwrite(file: string, at: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, at);
  } finally {
    fs.closeSync(fd);
  }
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A copy of the killed log with its WAL cut at byte `at`. */
function cutLog(at: number): string {
  const dataDir = copyLog(killedDir, 'commitd-cut-');
  fs.writeFileSync(path.join(dataDir, `${LOG_FILE}-wal`), killedWal.subarray(0, at));
  return dataDir;
}

function copyLog(from: string, prefix: string): string {
  const dir = scratch(prefix);
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  return dir;
}

const NEVER_SERVED = /Server listening|commitd ready/;

// One history, killed: the WAL cases damage copies of it. Started again and
// stopped with SIGTERM, it becomes a checkpointed log without a WAL: the
// torn-page, schema and read-only cases damage copies of that.
const killedDir = scratch('commitd-killed-');
const history = await makeKilledLog(killedDir);
const killedWal = fs.readFileSync(path.join(killedDir, `${LOG_FILE}-wal`));

const cleanDir = copyLog(killedDir, 'commitd-clean-');
const cleanService = await startService(cleanDir);
const cleanView = await settledView(cleanService).catch(async (error) => {
  await cleanService.kill('SIGKILL');
  throw error;
});
const cleanStopCode = await cleanService.kill('SIGTERM');

t.test('the killed log is what the damage needs: a WAL full of frames, then a checkpointed file', async (t) => {
  t.equal(history.ids.length, 29);
  t.ok(commitFrameEnds(killedWal).length > 50, 'the WAL holds many commit frames');
  t.equal(killedWal.length, commitFrameEnds(killedWal).at(-1), 'the WAL ends with a commit frame');
  t.notOk(fs.existsSync(path.join(killedDir, `${LOG_FILE}-shm`)), 'EXCLUSIVE locking: no shared-memory file');
  t.equal(cleanStopCode, 0, 'started on it, the service recovers it and stops cleanly');
  t.same(fs.readdirSync(cleanDir), [LOG_FILE], 'a clean stop checkpoints the WAL into the file and removes it');
  t.same([...cleanView.keys()].sort(), [...history.ids].sort(), 'the clean log holds every transaction');
});

t.test('a truncated WAL: the surviving records are a prefix of what was acknowledged, each intact', async (t) => {
  const ends = commitFrameEnds(killedWal);
  const middle = ends[Math.floor(ends.length / 2)] as number;
  const cuts = [
    { name: 'cut to nothing', at: 0 },
    { name: 'cut inside its header', at: 20 },
    { name: 'cut inside its first frame', at: WAL_HEADER_BYTES + WAL_FRAME_HEADER_BYTES + 1000 },
    { name: 'cut after its first commit frame (the schema alone)', at: ends[0] as number },
    { name: 'cut exactly after a commit frame in the middle', at: middle },
    { name: 'cut inside the header of the next frame', at: middle + 10 },
    { name: 'cut inside the page of the next frame', at: middle + WAL_FRAME_HEADER_BYTES + 2000 },
    { name: 'cut one byte short of its end', at: killedWal.length - 1 },
    { name: 'whole (the control)', at: killedWal.length },
  ];
  // The cruelest cut: after a one-shot's begin, before its commit decision,
  // when both participants have long committed it.
  const split = history.milestones.filter((m) => m.what === 'decided commit')[12]?.id as string;
  const splitAt = ends.find((end) => readLog(cutLog(end)).get(split)?.state === 'active') as number;
  cuts.push({ name: "cut between a one-shot's begin and its commit decision", at: splitAt });
  const everything = history.milestones.length;
  for (const cut of cuts) {
    await t.test(`WAL ${cut.name} (byte ${cut.at} of ${killedWal.length})`, async (t) => {
      const dataDir = cutLog(cut.at);
      const stored = readLog(dataDir);
      const sentBefore = commitsSent(history.ids);

      const s = await startService(dataDir);
      t.teardown(() => s.kill('SIGKILL'));
      t.equal((await call(s.url, 'GET', '/readyz')).status, 200, 'it starts');
      const view = await settledView(s);
      t.same([...view.keys()].sort(), [...stored.keys()].sort(), 'it serves exactly the records SQLite reads');

      for (const id of history.ids) {
        const got = await call(s.url, 'GET', `/v1/transactions/${id}`);
        const row = stored.get(id);
        if (!row) {
          t.equal(got.status, 404, `${id} was cut off: unknown`);
          t.same((await call(s.url, 'GET', `/v1/transactions/${id}/outcome`)).body, { outcome: 'abort' });
          continue;
        }
        t.equal(got.status, 200);
        const { state, outcome, abortReason } = got.body;
        t.same({ state, outcome, abortReason }, recovered(row), `${id}: stored ${row.state}, recovered as it was`);
        const sent = commitsSent([id]).get(id) ?? 0;
        if (row.outcome !== 'commit') t.equal(sent, sentBefore.get(id), `${id}: no commit without its decision`);
      }

      // A WAL keeps a prefix of its commits, so what survives of the history
      // clients were told is a prefix of it too.
      const survived = history.milestones.map((m) => {
        const tx = view.get(m.id);
        if (m.what === 'begun') return tx !== undefined;
        if (m.what === 'prepared') return tx?.state === 'prepared';
        if (m.what === 'decided commit') return tx?.outcome === 'commit';
        return tx?.outcome === 'abort' && tx.abortReason === 'client';
      });
      const kept = survived.indexOf(false) === -1 ? everything : survived.indexOf(false);
      t.same(
        survived,
        survived.map((_, i) => i < kept),
        `the first ${kept} of ${everything} acknowledgements survive, none after`,
      );
      if (cut.at <= (ends[0] as number)) t.equal(kept, 0, 'up to the schema nothing survives: an empty log');
      if (cut.at === killedWal.length) t.equal(kept, everything, 'the whole WAL keeps everything');
      if (cut.at === middle) t.ok(kept > 0 && kept < everything, 'a middle cut keeps some, loses some');

      if (cut.at === splitAt) {
        // The log lost a decision that was acknowledged and carried out: no
        // log can help that, but commitd does not hide it. Recovery aborts the
        // undecided one-shot, both participants answer that they committed,
        // and the transaction shows it.
        const tx = view.get(split);
        t.same(
          { state: tx.state, abortReason: tx.abortReason },
          { state: 'aborted', abortReason: 'recovery' },
          'the one-shot is aborted',
        );
        t.same(
          tx.participants.map((p: any) => p.heuristic),
          ['commit', 'commit'],
          'and both participants report their contrary commit',
        );
      }
      t.equal(await s.kill('SIGTERM'), 0, 'and stops cleanly');
      t.notMatch(s.output(), /failed to start|uncaught|FATAL/i);
    });
  }
});

interface LastPage {
  readonly file: string;
  /** Byte offset of the last page in the file. */
  readonly at: number;
  readonly size: number;
  /** Which b-tree it belongs to and what kind of page it is, as SQLite's dbstat tells. */
  readonly owner: string;
  readonly pagetype: string;
  /** The unused bytes between the cell pointers and the cell contents: nothing reads them. */
  readonly gap: { readonly from: number; readonly to: number };
}

function lastPage(dataDir: string): LastPage {
  const file = path.join(dataDir, LOG_FILE);
  const bytes = fs.readFileSync(file);
  const raw = bytes.readUInt16BE(16);
  const size = raw === 1 ? 65536 : raw;
  const copy = copyLog(dataDir, 'commitd-dbstat-');
  const db = new Database(path.join(copy, LOG_FILE));
  // The last page of transaction records (history pages may come after it).
  const stat = db
    .prepare(
      `SELECT name, pagetype, pageno FROM dbstat WHERE name = 'transactions' AND pagetype = 'leaf'
       ORDER BY pageno DESC LIMIT 1`,
    )
    .get() as { name: string; pagetype: string; pageno: number };
  const at = (stat.pageno - 1) * size;
  db.close();
  const page = bytes.subarray(at, at + size);
  // A b-tree page header: byte 0 the page type (interior pages have 12 header
  // bytes, leaves 8), bytes 3-4 the cell count, 5-6 where the cell contents start.
  const headerBytes = page[0] === 0x02 || page[0] === 0x05 ? 12 : 8;
  const from = at + headerBytes + 2 * page.readUInt16BE(3);
  const to = at + (page.readUInt16BE(5) || 65536);
  return { file, at, size, owner: stat.name, pagetype: stat.pagetype, gap: { from, to } };
}

/** What SQLite's own check says of a log, through a copy. */
function quickCheck(dataDir: string): string {
  const copy = copyLog(dataDir, 'commitd-check-');
  const db = new Database(path.join(copy, LOG_FILE));
  try {
    return db.pragma('quick_check', { simple: true }) as string;
  } finally {
    db.close();
  }
}

t.test('a torn last page: refused with exit 4 when anything reads wrong, served when nothing does', async (t) => {
  const page = lastPage(cleanDir);
  t.same(
    { owner: page.owner, pagetype: page.pagetype },
    { owner: 'transactions', pagetype: 'leaf' },
    'the last page holds transaction records',
  );
  t.ok(page.gap.to - page.gap.from >= 16, 'and has an unused gap');
  // SQLite either reports the damage from quick_check or fails reading the page.
  const detected = (file: string) =>
    new RegExp(
      `commitd: the decision log ${file} (failed its integrity check: \\*\\*\\* in database main \\*\\*\\*|` +
        'is unusable: database disk image is malformed)',
    );

  const refusedBySqlite = [
    { name: 'the second half of the last page is garbage', at: page.size / 2, bytes: garbage(page.size / 2, 'half') },
    { name: 'the second half of the last page is zeros', at: page.size / 2, bytes: Buffer.alloc(page.size / 2) },
    { name: 'the whole last page is garbage', at: 0, bytes: garbage(page.size, 'whole') },
  ];
  for (const tear of refusedBySqlite) {
    await t.test(tear.name, async (t) => {
      const dataDir = copyLog(cleanDir, 'commitd-torn-');
      const file = path.join(dataDir, LOG_FILE);
      overwrite(file, page.at + tear.at, tear.bytes);
      t.not(quickCheck(dataDir), 'ok', 'SQLite sees the damage');
      const result = await runToExit(dataDir);
      t.equal(result.code, 4, 'exit 4: the log is unusable');
      t.match(result.output, detected(file));
      t.notMatch(result.output, NEVER_SERVED, 'never listened');
    });
  }

  await t.test('garbage in the unused gap of the last page: nothing reads wrong, all is served', async (t) => {
    const dataDir = copyLog(cleanDir, 'commitd-torn-');
    const file = path.join(dataDir, LOG_FILE);
    overwrite(file, page.gap.from, garbage(page.gap.to - page.gap.from, 'gap'));
    t.equal(quickCheck(dataDir), 'ok', 'SQLite cannot see it');
    const s = await startService(dataDir);
    t.teardown(() => s.kill('SIGKILL'));
    t.same(await settledView(s), cleanView, 'every transaction reads exactly as before');
    t.equal(await s.kill('SIGTERM'), 0);
  });

  await t.test('garbage inside one record: SQLite cannot tell, commitd refuses naming it', async (t) => {
    const dataDir = copyLog(cleanDir, 'commitd-torn-');
    const file = path.join(dataDir, LOG_FILE);
    const bytes = fs.readFileSync(file);
    // Inside a participant list (JSON text): `"acknowledged"` becomes `"ack` and four control bytes.
    const hit = bytes.lastIndexOf('"acknowledged":', page.at + page.size, 'latin1');
    t.ok(hit > page.at, 'the last page holds a participant list');
    // The record's id is its first column: the nearest id before the hit.
    const idAt = bytes.lastIndexOf('tx_', hit, 'latin1');
    const id = bytes.subarray(idAt, idAt + 29).toString('latin1');
    t.ok(cleanView.has(id), `the hit lies in the record of ${id}`);
    overwrite(file, hit + 4, Buffer.from([0x01, 0x02, 0x03, 0x04]));
    t.equal(quickCheck(dataDir), 'ok', "SQLite's check passes it: it keeps no checksums of its pages");
    const result = await runToExit(dataDir);
    t.equal(result.code, 4, 'exit 4: the log is unusable');
    t.match(
      result.output,
      `commitd: the decision log ${file} holds a damaged record (transaction "${id}"): ` +
        "it passed SQLite's integrity check, but its contents are not what commitd writes",
    );
    t.notMatch(result.output, NEVER_SERVED, 'never listened');
  });
});

t.test(
  'a log from a newer schema version is refused, naming the file and both versions, and left as it is',
  async (t) => {
    const dataDir = copyLog(cleanDir, 'commitd-newer-');
    const file = path.join(dataDir, LOG_FILE);
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = sha256(file);
    const result = await runToExit(dataDir);
    t.equal(result.code, 4, 'exit 4: the log is unusable');
    t.match(
      result.output,
      `commitd: cannot use the decision log ${file}: the decision log has schema version ${SCHEMA_VERSION + 1}, ` +
        `newer than this commitd knows (${SCHEMA_VERSION}); run the newer commitd that wrote it`,
    );
    t.notMatch(result.output, NEVER_SERVED, 'never listened');
    t.equal(sha256(file), before, 'the log is untouched');
    t.same(fs.readdirSync(dataDir), [LOG_FILE], 'and nothing was added beside it');
  },
);

// Root ignores file permissions (and tests run as root here and in CI), so
// the read-only cases run the service as `nobody`; run as anyone else, the
// test's own user is unprivileged already.
const unprivileged =
  process.getuid?.() === 0
    ? {
        uid: Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()),
        gid: Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim()),
      }
    : {};

function runUnprivileged(dataDir: string): ReturnType<typeof spawnService> {
  return spawnService({ dataDir, env: FAST_SETTINGS, as: { ...unprivileged, cwd: path.dirname(dataDir) } });
}

function exitOf(child: ReturnType<typeof spawn>, timeoutMs = 20_000): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`commitd did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

t.test('a data directory or log it may not write: refused with exit 4 before listening', async (t) => {
  // A parent the unprivileged user may enter (mkdtemp makes 0700 directories).
  const parent = scratch('commitd-ro-');
  fs.chmodSync(parent, 0o755);
  const locked: string[] = [];
  t.teardown(() => {
    for (const p of locked) fs.chmodSync(p, 0o755);
  });
  const logDir = (name: string, withLog: boolean, dirMode: number, fileMode: number) => {
    const dir = path.join(parent, name);
    fs.mkdirSync(dir);
    if (withLog) {
      fs.copyFileSync(path.join(cleanDir, LOG_FILE), path.join(dir, LOG_FILE));
      fs.chmodSync(path.join(dir, LOG_FILE), fileMode);
    }
    fs.chmodSync(dir, dirMode);
    locked.push(dir);
    return dir;
  };

  await t.test('control: the same user starts on a directory it may write', async (t) => {
    const dataDir = logDir('writable', true, 0o777, 0o666);
    const run = runUnprivileged(dataDir);
    t.teardown(() => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    });
    const url = await run.ready.catch(() => undefined);
    t.ok(url, `it listens (the user must be able to read ${MAIN}):\n${run.output()}`);
    t.equal((await call(url as string, 'GET', '/readyz')).status, 200);
    run.child.kill('SIGTERM');
    t.equal(await exitOf(run.child), 0);
  });

  const cases = [
    {
      name: 'an empty data directory it cannot write',
      dir: () => logDir('empty', false, 0o555, 0),
      blames: (dir: string) => `the data directory ${dir}`,
    },
    {
      name: 'a data directory it cannot write, holding a log',
      dir: () => logDir('holding', true, 0o555, 0o644),
      blames: (dir: string) => `the data directory ${dir}`,
    },
    {
      name: 'a log file it cannot write, in a directory it can',
      dir: () => logDir('file', true, 0o777, 0o444),
      blames: (dir: string) => path.join(dir, LOG_FILE),
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const dataDir = c.dir();
      const file = path.join(dataDir, LOG_FILE);
      const before = fs.readdirSync(dataDir).map((f) => `${f} ${sha256(path.join(dataDir, f))}`);
      const run = runUnprivileged(dataDir);
      const code = await exitOf(run.child);
      t.equal(code, 4, 'exit 4: the log is unusable');
      t.match(
        run.output(),
        `commitd: the decision log ${file} cannot be written: ${c.blames(dataDir)} is read-only for this process (EACCES)`,
      );
      t.notMatch(run.output(), NEVER_SERVED, 'never listened: no read-only service');
      t.same(
        fs.readdirSync(dataDir).map((f) => `${f} ${sha256(path.join(dataDir, f))}`),
        before,
        'the directory is as it was',
      );
    });
  }
});

t.test(
  'a full disk: 503 for every write that cannot be made durable, alive, and whole once there is room',
  async (t) => {
    const h = await startHarness({ transactions: { retentionMs: LONG_TIMEOUT_MS } });
    // The log's own connection: SQLite's max_page_count stands in for the disk.
    const db = (h.log as unknown as { db: Database.Database }).db;
    let restarted: Awaited<ReturnType<typeof startHarness>> | null = null;
    t.teardown(async () => {
      if (restarted) return restarted.close(true);
      // Failed half way: room first, or closing cannot write what is queued.
      db.pragma('max_page_count = 4294967294');
      await h.close(true);
    });
    const inject = async (method: 'GET' | 'POST', url: string, payload?: object) => {
      const r = await h.app.inject({ method, url, ...(payload ? { payload } : {}) });
      return { status: r.statusCode, headers: r.headers, body: r.json() };
    };
    const full = (r: { status: number; headers: Record<string, unknown>; body: any }, what: string) =>
      t.same(
        {
          status: r.status,
          type: r.headers['content-type'],
          retryAfter: r.headers['retry-after'],
          problem: r.body.type,
          detail: r.body.detail,
        },
        {
          status: 503,
          type: 'application/problem+json; charset=utf-8',
          retryAfter: '5',
          problem: 'urn:commitd:problem:unavailable',
          detail: 'the decision log cannot be written: database or disk is full',
        },
        `${what}: 503, the log cannot be written`,
      );
    // Records this large spill into overflow pages, and rewriting one (every
    // state change rewrites the whole record) needs fresh pages: with no room
    // left, every write of these transactions fails, deterministically.
    const metadata = { note: 'x'.repeat(6000) };
    const told = new Map<string, { state: string; outcome: string | null }>();
    const parts = participants.map(({ name, url }) => ({ name, url }));

    const before = await inject('POST', '/v1/transactions', { participants: parts, commit: true, metadata });
    t.equal(before.status, 200);
    told.set(before.body.id, { state: 'committed', outcome: 'commit' });
    const open: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await inject('POST', '/v1/transactions', { participants: parts, timeoutMs: LONG_TIMEOUT_MS, metadata });
      t.equal(r.status, 201);
      open.push(r.body.id);
    }
    const [commitWhileFull, prepareWhileFull, enlistWhileFull] = open as [string, string, string];
    // One more has its prepares out when the disk fills: its `preparing` is
    // on disk, the participants are preparing and answer a little later.
    const votesOut = (
      await inject('POST', '/v1/transactions', { participants: parts, timeoutMs: LONG_TIMEOUT_MS, metadata })
    ).body.id as string;
    const slowYes: Behavior = (m, p) => {
      if (m.action !== 'prepare' || m.txId !== votesOut) return undefined;
      p.states.set(m.txId, 'prepared');
      return { status: 200, body: { vote: 'yes' }, delayMs: 300 };
    };
    a.behavior = slowYes;
    b.behavior = slowYes;
    t.teardown(() => {
      a.behavior = null;
      b.behavior = null;
    });
    const commitWithVotesOut = inject('POST', `/v1/transactions/${votesOut}/commit`);
    await waitUntil(() => a.count('prepare', votesOut) + b.count('prepare', votesOut) === 2);

    // The disk fills up: not one more page. Pages the rewrites above freed
    // are taken first (a page-sized filler row each), so none is left to reuse.
    db.exec('CREATE TABLE IF NOT EXISTS filler (bytes BLOB)');
    const page = db.pragma('page_size', { simple: true }) as number;
    for (let i = 0; i < 10_000 && (db.pragma('freelist_count', { simple: true }) as number) > 0; i++) {
      db.prepare('INSERT INTO filler VALUES (zeroblob(?))').run(page - 64);
    }
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true })}`);
    t.equal(db.pragma('freelist_count', { simple: true }), 0, 'and no free page to reuse');
    const prepares = a.count('prepare') + b.count('prepare');

    full(await inject('POST', '/v1/transactions', { participants: parts, commit: true, metadata }), 'one-shot begin');
    full(
      await inject('POST', '/v1/transactions', { participants: parts, metadata, timeoutMs: LONG_TIMEOUT_MS }),
      'begin',
    );
    full(
      await inject('POST', `/v1/transactions/${commitWhileFull}/commit`),
      'commit (its preparing cannot be written)',
    );
    full(
      await inject('POST', `/v1/transactions/${prepareWhileFull}/prepare`),
      'prepare (its preparing cannot be written)',
    );
    t.equal(a.count('prepare') + b.count('prepare'), prepares, 'no participant was asked to prepare for any of them');
    full(
      await inject('POST', `/v1/transactions/${enlistWhileFull}/participants`, { name: 'audit', url: a.url }),
      'enlist',
    );
    full(await commitWithVotesOut, 'commit (every vote is yes, the decision cannot be written)');
    t.equal(a.count('commit', votesOut) + b.count('commit', votesOut), 0, 'no commit message left');
    // Prepared participants are not left in doubt until the deadline: with no
    // decision on disk the transaction is aborted, as recovery would.
    await waitUntil(() => a.states.get(votesOut) === 'aborted' && b.states.get(votesOut) === 'aborted');
    const again = await inject('POST', `/v1/transactions/${votesOut}/commit`);
    t.same(
      { status: again.status, outcome: again.body.transaction?.outcome, reason: again.body.transaction?.abortReason },
      { status: 409, outcome: 'abort', reason: 'recovery' },
      'a retried commit hears that it was aborted',
    );
    told.set(votesOut, { state: 'aborted', outcome: 'abort' });
    for (const id of [commitWhileFull, prepareWhileFull]) {
      t.equal((await inject('GET', `/v1/transactions/${id}`)).body.state, 'active', 'a refused call changed nothing');
    }
    full(await inject('GET', '/v1/transactions'), 'list (it writes what is queued first)');
    t.equal((await inject('GET', '/healthz')).status, 200, 'alive');
    t.equal((await inject('GET', `/v1/transactions/${enlistWhileFull}`)).body.participants.length, 2, 'not enlisted');
    t.ok(h.errors.length > 0, 'the failed writes were reported');
    t.same(
      [...new Set(h.errors.map((e) => e.message.replace(/^the decision log cannot be written: /, '')))],
      ['database or disk is full'],
      'every one of them the full disk',
    );

    // Room again: what was queued reaches the log and work goes on.
    db.pragma('max_page_count = 4294967294');
    const after = await inject('POST', '/v1/transactions', { participants: parts, commit: true, metadata });
    t.equal(after.status, 200, 'a one-shot commit succeeds again');
    told.set(after.body.id, { state: 'committed', outcome: 'commit' });
    for (const id of [enlistWhileFull, commitWhileFull, prepareWhileFull]) {
      const committed = await inject('POST', `/v1/transactions/${id}/commit`);
      t.equal(committed.status, 200, 'and so does a commit, also of those refused while the disk was full');
      told.set(id, { state: 'committed', outcome: 'commit' });
    }
    t.equal((await inject('GET', '/v1/transactions')).status, 200, 'and a list');

    await h.close();
    restarted = await startHarness({}, h.dataDir);
    const listed = await restarted.app.inject({ method: 'GET', url: '/v1/transactions?limit=100' });
    const recoveredView = new Map<string, { state: string; outcome: string | null }>(
      listed.json().transactions.map((tx: any) => [tx.id, { state: tx.state, outcome: tx.outcome }]),
    );
    t.same(
      Object.fromEntries([...recoveredView].sort()),
      Object.fromEntries([...told].sort()),
      'after a restart the log holds exactly what was acknowledged, as it was acknowledged',
    );
  },
);
