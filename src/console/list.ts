// The list of transactions: the filters an operator needs (state, stuck,
// unresolved heuristic, older than, participant), newest first, a page at a
// time (`next` is the cursor commitd hands back).

import { call } from './api.js';
import { badge, cardTable, el, fill, time } from './dom.js';
import type { ListPage, ParticipantView, TransactionView } from './types.js';

/** Rows per page: a screenful, and a small answer. */
export const PAGE_SIZE = 25;
/** The longest participant name the filter sends (commitd refuses longer ones anyway). */
const PARTICIPANT_FILTER_CHARS_MAX = 200;

export interface Filters {
  state: string;
  stuck: boolean;
  heuristicUnresolved: boolean;
  olderThanMs: number | null;
  participant: string;
}

export function readFilters(form: HTMLFormElement): Filters {
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? '').trim();
  const olderThanS = text('olderThanS');
  const seconds = olderThanS === '' ? Number.NaN : Number(olderThanS);
  return {
    state: text('state'),
    stuck: data.get('stuck') !== null,
    heuristicUnresolved: data.get('heuristic') !== null,
    olderThanMs: Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : null,
    participant: text('participant').slice(0, PARTICIPANT_FILTER_CHARS_MAX),
  };
}

export function listQuery(filters: Filters, after: string | null): string {
  const query = new URLSearchParams();
  if (filters.state !== '') query.set('state', filters.state);
  if (filters.stuck) query.set('stuck', 'true');
  if (filters.heuristicUnresolved) query.set('heuristic', 'unresolved');
  if (filters.olderThanMs !== null) query.set('olderThanMs', String(filters.olderThanMs));
  if (filters.participant !== '') query.set('participant', filters.participant);
  query.set('limit', String(PAGE_SIZE));
  if (after !== null) query.set('after', after);
  return `/v1/transactions?${query.toString()}`;
}

export async function loadPage(filters: Filters, after: string | null): Promise<ListPage> {
  return (await call<ListPage>('GET', listQuery(filters, after))).body;
}

/** Is this participant past the stuck threshold (unacknowledged, delivery failing again and again)? */
export function isStuck(p: ParticipantView, stuckAfterAttempts: number | null): boolean {
  return !p.acknowledged && stuckAfterAttempts !== null && (p.attempts ?? 0) >= stuckAfterAttempts;
}

export function hasUnresolvedHeuristic(tx: TransactionView): boolean {
  return tx.participants.some(
    (p) => p.heuristic !== undefined && p.heuristic !== tx.outcome && p.heuristicResolved === undefined,
  );
}

/** The badges that say a transaction needs a look. */
export function attention(tx: TransactionView, stuckAfterAttempts: number | null): HTMLElement[] {
  const badges: HTMLElement[] = [];
  if (tx.participants.some((p) => isStuck(p, stuckAfterAttempts))) badges.push(badge('stuck', 'bad'));
  else if (tx.participants.some((p) => !p.acknowledged && (p.attempts ?? 0) > 0))
    badges.push(badge('retrying', 'warn'));
  if (hasUnresolvedHeuristic(tx)) badges.push(badge('heuristic unresolved', 'bad'));
  if (tx.mixedOutcome) badges.push(badge('mixed outcome', 'bad'));
  return badges;
}

export function stateBadge(tx: TransactionView): HTMLElement {
  const tone = tx.state === 'committed' ? 'good' : tx.state === 'aborted' ? 'bad' : 'warn';
  return badge(tx.state, tone);
}

const COLUMNS = ['Transaction', 'State', 'Begun', 'Participants', 'Attention'] as const;

export function renderList(target: Element, page: ListPage, stuckAfterAttempts: number | null): void {
  if (page.transactions.length === 0) {
    fill(target, el('p', { class: 'empty' }, 'No transaction matches these filters.'));
    return;
  }
  const rows = page.transactions.map((tx) => ({
    attributes: { 'data-id': tx.id, 'data-state': tx.state },
    cells: {
      Transaction: el('a', { href: `#/tx/${encodeURIComponent(tx.id)}` }, tx.id),
      State: stateBadge(tx),
      Begun: time(tx.createdAt),
      Participants: tx.participants.map((p) => p.name).join(', ') || '—',
      Attention: attention(tx, stuckAfterAttempts),
    },
  }));
  fill(target, cardTable('Transactions, newest first', COLUMNS, rows));
}
