// A transaction's history (GET /v1/transactions/{id}/history) as a timeline:
// one line per entry, oldest first, in words an operator reads at a glance.

import { el, fill, time } from './dom.js';
import type { Caller, History, HistoryEntry } from './types.js';

interface Line {
  readonly what: string;
  readonly detail: string;
  /** Something went wrong here: drawn in the alarm colour. */
  readonly bad: boolean;
}

function caller(by: HistoryEntry['by']): string {
  if (by === undefined || by === null) return 'unknown caller';
  if (typeof by === 'string') return by;
  const who = by as Caller;
  const parts = [
    who.role ?? 'no token',
    who.tokenId === null ? null : `token ${who.tokenId}`,
    who.address === null ? null : `from ${who.address}`,
  ];
  return parts.filter((p) => p !== null).join(', ');
}

const latency = (e: HistoryEntry) => (e.latencyMs === undefined ? '' : ` after ${e.latencyMs} ms`);
/** A failure counts the attempts made, itself included. */
const failureNumber = (e: HistoryEntry) => (e.attempt === undefined ? '' : ` (attempt ${e.attempt})`);

export function describe(e: HistoryEntry): Line {
  const p = e.participant ?? '?';
  switch (e.type) {
    case 'begun':
      return {
        what: e.oneShot ? 'Begun (one-shot commit)' : 'Begun',
        detail: `by ${caller(e.by)}; participants: ${(e.participants ?? []).join(', ') || 'none yet'}`,
        bad: false,
      };
    case 'enlisted':
      return { what: `Enlisted ${p}`, detail: '', bad: false };
    case 'requested':
      return { what: `${e.action ?? '?'} requested`, detail: `by ${caller(e.by)}`, bad: false };
    case 'voted':
      return {
        what: `${p} voted ${e.vote ?? '?'}`,
        detail: `${e.reason === undefined ? '' : `${e.reason}; `}${latency(e).trim()}`,
        bad: e.vote === 'no',
      };
    case 'vote-lost':
      return { what: `${p}: no answer to prepare`, detail: `${e.reason ?? ''}${latency(e)}`, bad: true };
    case 'decided':
      return { what: `Decided ${e.outcome ?? '?'}`, detail: `reason: ${e.reason ?? '?'}`, bad: e.outcome === 'abort' };
    case 'delivery-failed':
      return {
        what: `${e.message ?? '?'} to ${p} failed${failureNumber(e)}`,
        detail: `${e.error ?? ''}${latency(e)}`,
        bad: true,
      };
    case 'acknowledged':
      return { what: `${p} acknowledged ${e.message ?? ''}`.trim(), detail: latency(e).trim(), bad: false };
    case 'heuristic':
      return { what: `${p} decided ${e.heuristic ?? '?'} on its own (heuristic)`, detail: '', bad: true };
    case 'recovered':
      return { what: 'Recovered after a restart', detail: `state: ${e.state ?? '?'}`, bad: false };
    case 'finished':
      return { what: 'Finished', detail: '', bad: false };
    case 'operator-retry':
      return { what: 'Operator: retry now', detail: `by ${caller(e.by)}`, bad: false };
    case 'heuristic-resolved':
      return { what: `Operator resolved ${p}'s heuristic`, detail: `“${e.note ?? ''}” by ${caller(e.by)}`, bad: false };
    case 'truncated':
      return {
        what: 'History cut short',
        detail:
          e.afterEntries !== undefined
            ? `after ${e.afterEntries} entries only the decision, heuristics and the end are kept`
            : `${e.dropped ?? '?'} entries not kept`,
        bad: false,
      };
    default:
      return { what: e.type, detail: '', bad: false };
  }
}

export function renderHistory(target: Element, history: History): void {
  if (history.entries.length === 0) {
    fill(target, el('p', { class: 'empty' }, 'No history recorded.'));
    return;
  }
  const list = el('ol', { class: 'timeline', 'aria-label': 'History, oldest first' });
  for (const entry of history.entries) {
    const line = describe(entry);
    list.append(
      el(
        'li',
        { class: line.bad ? 'bad' : '', 'data-type': entry.type },
        time(entry.at),
        el('span', { class: 'what' }, line.what),
        line.detail === '' ? null : el('div', { class: 'detail' }, line.detail),
      ),
    );
  }
  fill(
    target,
    history.truncated ? el('p', {}, 'The history was cut short: it keeps a bounded number of entries.') : null,
    list,
  );
}
