// The overview: what is in flight, how fast things are decided, and what
// needs a human (stuck participants, unresolved heuristics, the oldest
// unfinished transaction), from GET /v1/stats.

import { call } from './api.js';
import { duration, el, fill, time } from './dom.js';
import type { Stats } from './types.js';

const IN_FLIGHT_STATES = ['active', 'preparing', 'prepared', 'committing', 'aborting'] as const;

export async function loadStats(): Promise<Stats> {
  return (await call<Stats>('GET', '/v1/stats')).body;
}

export function renderOverview(target: Element, stats: Stats): void {
  const list = el('dl', { class: 'stats' });
  const item = (label: string, value: Node | string, alarm = false) =>
    list.append(el('div', {}, el('dt', {}, label), el('dd', alarm ? { class: 'alarm' } : {}, value)));
  for (const state of IN_FLIGHT_STATES) item(`In flight: ${state}`, String(stats.inFlight[state] ?? 0));
  item('Commits per second', stats.decidedPerSecond.commit.toFixed(1));
  item('Aborts per second', stats.decidedPerSecond.abort.toFixed(1));
  item(
    `Stuck participants (${stats.stuckAfterAttempts}+ attempts)`,
    String(stats.stuckParticipants),
    stats.stuckParticipants > 0,
  );
  item('Unresolved heuristics', String(stats.unresolvedHeuristics), stats.unresolvedHeuristics > 0);
  const oldest = stats.oldestUnfinished;
  item(
    'Oldest unfinished',
    oldest === null
      ? 'none'
      : el(
          'span',
          {},
          el('a', { href: `#/tx/${encodeURIComponent(oldest.id)}` }, `${duration(oldest.ageMs)} old`),
          el('span', { class: 'aside' }, `${oldest.state}, begun `, time(oldest.createdAt)),
        ),
  );
  fill(target, list);
}
