// A correct, durable participant for the chaos run (npm run chaos): one HTTP
// port, base path /tx, speaking the participant protocol of docs/protocol.md. Every
// change of a transaction's state is appended to its own file and fsynced
// before any answer that depends on it leaves, so a SIGKILL at any instant
// loses nothing it told the coordinator; at start the file is replayed.
//
// Behaviour:
// - prepare: votes yes, or no for a configurable fraction of transactions,
//   decided from a hash of the transaction id and this participant's name, so
//   a repeated prepare gets the same vote. A transaction it already aborted
//   (including one whose abort it answered 404 because it had never heard of
//   it) gets no: an abort may overtake a prepare sent before a coordinator
//   crash, and the prepare must not win.
// - commit and abort are idempotent. Abort of an unknown id answers 404 and
//   is remembered.
// - It never decides on its own, so it never answers 409 with a heuristic
//   outcome. A request a correct coordinator never sends (commit of a
//   transaction it did not prepare, abort after commit, a message meant for
//   another participant) is recorded in the file as an anomaly, which fails
//   the chaos checker, and answered 500: it is refused, not acted on.
//
// File format: one JSON object per line, in the order things happened:
//   {"n":seq,"t":ms,"tx":id,"op":"prepare"|"commit"|"abort","to":state,"key"?:…,"unknown"?:true}
//   {"n":seq,"t":ms,"tx":id,"op":…,"anomaly":"what was asked, in which state"}
// with `to` one of prepared, refused (voted no, rolled back), committed, aborted.
//
// Usage: node dist/bench/durable-participant.js --port N --name NAME --file PATH [--no-fraction F]
// Prints `durable-participant ready <port>` once listening.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { int, num, parseFlags, str } from '../src/cli/args.js';

export type ParticipantState = 'prepared' | 'refused' | 'committed' | 'aborted';
export type Op = 'prepare' | 'commit' | 'abort';

/** One line of a participant's file. */
export interface FileEntry {
  readonly n: number;
  readonly t: number;
  readonly tx: string;
  readonly op: Op;
  readonly to?: ParticipantState;
  readonly key?: string;
  readonly unknown?: boolean;
  readonly anomaly?: string;
}

/** Largest request body read; the coordinator's messages are far smaller. */
const MAX_BODY_BYTES = 1 << 20;

/**
 * The vote a participant gives a transaction: the same every time it is
 * asked, independent between participants.
 */
export function votesNo(txId: string, name: string, noFraction: number): boolean {
  if (noFraction <= 0) return false;
  const digest = createHash('sha256').update(`${name}\u0000${txId}`).digest();
  return digest.readUInt32BE(0) / 2 ** 32 < noFraction;
}

/**
 * Reads a participant file. A torn last line (the process was killed in the
 * middle of a write it had not yet answered for) is dropped; `validBytes`
 * says where the intact part ends. A torn line anywhere else is corruption.
 */
export function readEntries(file: string): { entries: FileEntry[]; validBytes: number } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], validBytes: 0 };
    throw error;
  }
  const end = text.lastIndexOf('\n') + 1;
  const entries: FileEntry[] = [];
  for (const line of text.slice(0, end).split('\n')) {
    if (line === '') continue;
    entries.push(JSON.parse(line) as FileEntry);
  }
  return { entries, validBytes: Buffer.byteLength(text.slice(0, end)) };
}

interface Options {
  port: number;
  name: string;
  file: string;
  noFraction: number;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    port: int(1, 65535),
    name: str(),
    file: str(),
    'no-fraction': num(0, 1, 0),
  });
  if (v.port === undefined || v.name === undefined || v.file === undefined || v.name === '' || v.file === '') {
    throw new Error('--port, --name and --file are required');
  }
  return { port: v.port, name: v.name, file: v.file, noFraction: v['no-fraction'] };
}

/** The durable state: the file, and the map replayed from it. */
class Journal {
  readonly states = new Map<string, ParticipantState>();
  private readonly fd: number;
  private seq = 0;
  private pending: string[] = [];
  private waiters: Array<() => void> = [];
  private scheduled = false;

  constructor(file: string) {
    const { entries, validBytes } = readEntries(file);
    for (const e of entries) {
      this.seq = Math.max(this.seq, e.n);
      if (e.to !== undefined) this.states.set(e.tx, e.to);
    }
    this.fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND);
    // Drop a torn last line, so the next append starts a line of its own.
    if (fs.fstatSync(this.fd).size !== validBytes) {
      fs.ftruncateSync(this.fd, validBytes);
      fs.fsyncSync(this.fd);
    }
  }

  record(entry: Omit<FileEntry, 'n' | 't'>): void {
    if (entry.to !== undefined) this.states.set(entry.tx, entry.to);
    this.pending.push(`${JSON.stringify({ n: ++this.seq, t: Date.now(), ...entry })}\n`);
    if (!this.scheduled) {
      this.scheduled = true;
      // Group commit: everything recorded in this turn of the event loop
      // shares one fsync.
      setImmediate(() => this.flush());
    }
  }

  /**
   * Resolves once everything recorded so far is on disk. Every answer waits
   * for it, including one that changed nothing: it may rest on a state whose
   * line is still queued.
   */
  durable(): Promise<void> {
    if (this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Synchronous on purpose: there is never a write half done when an answer goes out. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    fs.writeSync(this.fd, lines.join(''));
    fs.fsyncSync(this.fd);
    for (const w of waiters) w();
  }
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

function handle(journal: Journal, o: Options, op: Op, message: Record<string, unknown>): Reply {
  const tx = message.transactionId;
  if (typeof tx !== 'string' || tx === '') return { status: 400, body: { error: 'transactionId is required' } };
  if (message.participant !== o.name) {
    const anomaly = `${op} addressed to participant ${JSON.stringify(message.participant)}, this is ${o.name}`;
    journal.record({ tx, op, anomaly });
    return { status: 500, body: { error: anomaly } };
  }
  const state = journal.states.get(tx);
  switch (op) {
    case 'prepare': {
      if (state === 'aborted') return { status: 200, body: { vote: 'no', reason: 'already aborted' } };
      if (state === 'refused') return { status: 200, body: { vote: 'no', reason: 'refused' } };
      // Prepared or committed: a repeated prepare; the vote stands.
      if (state !== undefined) return { status: 200, body: { vote: 'yes' } };
      const payload = message.payload as { key?: unknown } | null | undefined;
      const key = typeof payload?.key === 'string' ? payload.key : undefined;
      if (votesNo(tx, o.name, o.noFraction)) {
        journal.record({ tx, op, to: 'refused', ...(key === undefined ? {} : { key }) });
        return { status: 200, body: { vote: 'no', reason: 'refused' } };
      }
      journal.record({ tx, op, to: 'prepared', ...(key === undefined ? {} : { key }) });
      return { status: 200, body: { vote: 'yes' } };
    }
    case 'commit': {
      if (state === 'committed') return { status: 200, body: {} };
      if (state === 'prepared') {
        journal.record({ tx, op, to: 'committed' });
        return { status: 200, body: {} };
      }
      const anomaly = `commit of a transaction in state ${state ?? 'unknown'}`;
      journal.record({ tx, op, anomaly });
      return { status: 500, body: { error: anomaly } };
    }
    case 'abort': {
      if (state === 'aborted' || state === 'refused') return { status: 200, body: {} };
      if (state === 'prepared') {
        journal.record({ tx, op, to: 'aborted' });
        return { status: 200, body: {} };
      }
      if (state === undefined) {
        // Never heard of it: remember the abort, so a late prepare votes no.
        journal.record({ tx, op, to: 'aborted', unknown: true });
        return { status: 404, body: {} };
      }
      const anomaly = `abort of a transaction in state ${state}`;
      journal.record({ tx, op, anomaly });
      return { status: 500, body: { error: anomaly } };
    }
  }
}

function main(): void {
  const o = parseOptions(process.argv.slice(2));
  const journal = new Journal(o.file);

  const server = http.createServer((req, res) => {
    const send = (status: number, body: Record<string, unknown>) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const match = /^\/tx\/(prepare|commit|abort)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !match) {
      req.resume();
      send(404, { error: 'not found' });
      return;
    }
    const op = match[1] as Op;
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes > MAX_BODY_BYTES) {
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      let message: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
        message = parsed as Record<string, unknown>;
      } catch {
        send(400, { error: 'the body must be a JSON object' });
        return;
      }
      const reply = handle(journal, o, op, message);
      journal.durable().then(() => send(reply.status, reply.body));
    });
  });
  // Longer than the coordinator's keep-alive, so it never reuses a socket
  // this side is closing.
  server.keepAliveTimeout = 65_000;
  server.listen(o.port, '127.0.0.1', () => {
    process.stdout.write(`durable-participant ready ${o.port}\n`);
  });
  server.on('error', (error) => {
    console.error(`durable-participant ${o.name}: ${error.message}`);
    process.exit(1);
  });

  const stop = () => {
    journal.flush();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Never outlive the chaos run that started us, even if it was killed.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 500).unref();
}

// Imported by the chaos checker for readEntries/votesNo; run as a process otherwise.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main();
