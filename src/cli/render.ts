// What `commitd` prints for people: a transaction, a page of the list, a
// history, the overview. `--json` bypasses all of this and prints commitd's
// answer as it came.

import type {
  Caller,
  HistoryEntry,
  ParticipantView,
  Stats,
  Transaction,
  TransactionHistory,
  TransactionPage,
} from '../client/index.js';
import { duration, keyValues, table } from './table.js';

export function renderPage(page: TransactionPage, nowMs: number): string {
  if (page.transactions.length === 0) return 'no transactions';
  const rows = page.transactions.map((tx) => [
    tx.id,
    tx.state,
    tx.outcome ?? '-',
    duration(nowMs - Date.parse(tx.createdAt)),
    participantCount(tx),
    attention(tx).join('; ') || '-',
  ]);
  const lines = [table(['ID', 'STATE', 'OUTCOME', 'AGE', 'PARTICIPANTS', 'ATTENTION'], rows)];
  if (page.next !== null) lines.push('', `more: the same command with --after ${page.next}`);
  return lines.join('\n');
}

export function renderTransaction(tx: Transaction): string {
  const head = keyValues([
    ['id', tx.id],
    ['state', tx.state],
    ['outcome', tx.outcome],
    ['abort reason', tx.abortReason],
    ['mixed outcome', tx.mixedOutcome ? 'yes: a participant decided the other way on its own' : null],
    ['created', tx.createdAt],
    ['deadline', tx.deadline],
    ['decided', tx.decidedAt],
    ['finished', tx.finishedAt],
    ['idempotency key', tx.idempotencyKey],
    ['metadata', tx.metadata === null || tx.metadata === undefined ? null : JSON.stringify(tx.metadata)],
  ]);
  if (tx.participants.length === 0) return `${head}\n\nno participants`;
  const rows = tx.participants.map((p) => [
    p.name,
    target(p),
    p.vote ?? '-',
    p.acknowledged ? 'yes' : 'no',
    String(p.attempts ?? 0),
    heuristic(p),
    p.lastError ?? p.reason ?? '-',
  ]);
  const lines = [
    head,
    '',
    table(['PARTICIPANT', 'TARGET', 'VOTE', 'ACKED', 'ATTEMPTS', 'HEURISTIC', 'LAST ERROR / REASON'], rows),
  ];
  const resolved = tx.participants.filter((p) => p.heuristicResolved !== undefined);
  if (resolved.length > 0) {
    lines.push('', 'resolved heuristics:');
    for (const p of resolved) {
      const r = p.heuristicResolved;
      if (r !== undefined) lines.push(`  ${p.name}: ${r.at} by ${r.by ?? 'unknown'}: ${JSON.stringify(r.note)}`);
    }
  }
  return lines.join('\n');
}

export function renderHistory(history: TransactionHistory): string {
  const rows = history.entries.map((entry) => [
    entry.at,
    entry.type,
    'participant' in entry ? entry.participant : '-',
    details(entry),
  ]);
  const lines = [table(['AT', 'EVENT', 'PARTICIPANT', 'DETAILS'], rows)];
  if (history.truncated) lines.push('', 'older entries were dropped: the history is bounded per transaction');
  return lines.join('\n');
}

export function renderStats(stats: Stats): string {
  const inFlight = Object.entries(stats.inFlight).map(([state, n]) => `${state} ${n}`);
  const oldest = stats.oldestUnfinished;
  return keyValues([
    ['in flight', inFlight.join(', ')],
    [
      'decided per second',
      `commit ${rate(stats.decidedPerSecond.commit)}, abort ${rate(stats.decidedPerSecond.abort)} (last 10 s)`,
    ],
    ['stuck participants', `${stats.stuckParticipants} (unacknowledged after ${stats.stuckAfterAttempts} attempts)`],
    ['unresolved heuristics', String(stats.unresolvedHeuristics)],
    ['oldest unfinished', oldest === null ? 'none' : `${oldest.id} ${oldest.state}, ${duration(oldest.ageMs)} old`],
  ]);
}

/** The participants, and how many of them still owe an acknowledgement once there is an outcome. */
function participantCount(tx: Transaction): string {
  const total = String(tx.participants.length);
  if (tx.outcome === null) return total;
  const owing = tx.participants.filter((p) => !p.acknowledged).length;
  return owing === 0 ? total : `${total} (${owing} unacked)`;
}

/** What an operator should look at: failing deliveries, heuristics, a mixed outcome. */
function attention(tx: Transaction): string[] {
  const notes: string[] = [];
  if (tx.mixedOutcome) notes.push('mixed outcome');
  for (const p of tx.participants) {
    if (p.heuristic !== undefined) notes.push(`${p.name} ${heuristic(p)}`);
    if (!p.acknowledged && (p.attempts ?? 0) > 0) notes.push(`${p.name} ${p.attempts} attempts`);
  }
  return notes;
}

function heuristic(p: ParticipantView): string {
  if (p.heuristic === undefined) return '-';
  return p.heuristicResolved === undefined ? `${p.heuristic} (unresolved)` : `${p.heuristic} (resolved)`;
}

function target(p: ParticipantView): string {
  if (p.message !== undefined) {
    const m = p.message;
    return `message ${m.subject}${m.stream === null ? '' : ` stream ${m.stream} seq ${m.seq}`}`;
  }
  if (p.database !== undefined) return `database ${p.database}${p.xid ? ` xid ${p.xid}` : ''}`;
  return p.url ?? '-';
}

/** An entry's fields besides its time, type and participant, as key=value. */
function details(entry: HistoryEntry): string {
  return Object.entries(entry)
    .filter(([k]) => k !== 'at' && k !== 'type' && k !== 'participant')
    .map(([k, v]) => `${k}=${k === 'by' ? caller(v as Caller | string | null) : value(v)}`)
    .join(' ');
}

/** role:tokenId@address, each part only when known. */
function caller(by: Caller | string | null): string {
  if (by === null || typeof by !== 'object') return value(by);
  const who = [by.role, by.tokenId].filter((x) => x !== null).join(':') || 'unknown';
  return by.address === null ? who : `${who}@${by.address}`;
}

/** Plain words as they are, lists of them comma-separated, anything else as JSON. */
function value(v: unknown): string {
  if (typeof v === 'string') return /^[\w.:/@-]+$/.test(v) ? v : JSON.stringify(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' && /^[\w.:/@-]+$/.test(x))) return v.join(',');
  return JSON.stringify(v) ?? '-';
}

function rate(perSecond: number): string {
  return perSecond.toFixed(perSecond < 10 ? 2 : 0);
}
