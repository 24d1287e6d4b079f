// One transaction: what it is, its participants (vote, acknowledgement,
// attempts, last error, heuristic) and its history; the operator actions
// live in app.ts.

import { call, segment } from './api.js';
import { badge, cardTable, el, facts, fill, time } from './dom.js';
import { renderHistory } from './history.js';
import { isStuck, stateBadge } from './list.js';
import type { History, ParticipantView, TransactionView } from './types.js';

export async function loadTransaction(id: string): Promise<{ tx: TransactionView; history: History }> {
  const [tx, history] = await Promise.all([
    call<TransactionView>('GET', `/v1/transactions/${segment(id)}`),
    call<History>('GET', `/v1/transactions/${segment(id)}/history`),
  ]);
  return { tx: tx.body, history: history.body };
}

export function renderTransaction(
  parts: { summary: Element; participants: Element; history: Element },
  tx: TransactionView,
  history: History,
  stuckAfterAttempts: number | null,
): void {
  fill(
    parts.summary,
    facts([
      ['Id', tx.id],
      ['State', stateBadge(tx)],
      ['Outcome', tx.outcome ?? 'not decided'],
      ['Abort reason', tx.abortReason],
      ['Begun', time(tx.createdAt)],
      ['Deadline', time(tx.deadline)],
      ['Decided', tx.decidedAt === null ? 'not yet' : time(tx.decidedAt)],
      ['Finished', tx.finishedAt === null ? 'not yet' : time(tx.finishedAt)],
      ['Mixed outcome', tx.mixedOutcome ? badge('yes: effects are not atomic', 'bad') : 'no'],
      ['Idempotency key', tx.idempotencyKey],
      ['Metadata', tx.metadata === null ? null : el('code', {}, JSON.stringify(tx.metadata))],
    ]),
  );
  renderParticipants(parts.participants, tx, stuckAfterAttempts);
  renderHistory(parts.history, history);
}

const COLUMNS = ['Participant', 'Vote', 'Acknowledged', 'Attempts', 'Last error', 'Heuristic'] as const;

function renderParticipants(target: Element, tx: TransactionView, stuckAfterAttempts: number | null): void {
  if (tx.participants.length === 0) {
    fill(target, el('p', { class: 'empty' }, 'No participant enlisted.'));
    return;
  }
  const rows = tx.participants.map((p) => ({
    attributes: { 'data-participant': p.name },
    cells: {
      Participant: [el('strong', {}, p.name), el('div', { class: 'detail' }, where(p))],
      Vote: [p.vote ?? 'none yet', p.reason === undefined ? null : el('div', {}, p.reason)],
      Acknowledged: p.acknowledged
        ? badge('yes', 'good')
        : isStuck(p, stuckAfterAttempts)
          ? badge('no: stuck', 'bad')
          : 'no',
      Attempts: String(p.attempts ?? 0),
      'Last error': p.lastError ?? '—',
      Heuristic: heuristic(p),
    },
  }));
  fill(target, cardTable('Participants', COLUMNS, rows));
}

function where(p: ParticipantView): string {
  if (p.url !== undefined) return p.url;
  if (p.database !== undefined) return `database ${p.database}`;
  if (p.message !== undefined) {
    const m = p.message;
    return `message ${m.subject}${m.stream === null ? ' (not published)' : ` → stream ${m.stream} #${m.seq}`}`;
  }
  return '';
}

function heuristic(p: ParticipantView): Node | string {
  if (p.heuristic === undefined) return '—';
  if (p.heuristicResolved === undefined) return badge(`${p.heuristic}, unresolved`, 'bad');
  const r = p.heuristicResolved;
  return el(
    'span',
    {},
    badge(`${p.heuristic}, resolved`, 'good'),
    el('div', {}, `“${r.note}”`, r.by === null ? '' : ` by ${r.by}`, ', ', time(r.at)),
  );
}
