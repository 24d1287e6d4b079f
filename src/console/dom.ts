// Building the page from data: every value from the server goes in as text
// (textContent, attributes set one by one), never as markup.

type Child = Node | string | number | null | undefined | false;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replaces everything inside `parent` with `children`. */
export function fill(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node as T;
}

/** A definition list of label -> value pairs. */
export function facts(rows: ReadonlyArray<readonly [string, Child]>, className = 'facts'): HTMLDListElement {
  const list = el('dl', { class: className });
  for (const [label, value] of rows) list.append(el('div', {}, el('dt', {}, label), el('dd', {}, value ?? '—')));
  return list;
}

export function badge(text: string, tone: 'good' | 'bad' | 'warn' | '' = ''): HTMLSpanElement {
  return el('span', { class: tone === '' ? 'badge' : `badge ${tone}` }, text);
}

/** A timestamp as the operator's local time, with the exact ISO value kept for machines and tooltips. */
export function time(iso: string): HTMLTimeElement {
  const date = new Date(iso);
  const shown = Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  return el('time', { datetime: iso, title: iso }, shown);
}

/** A duration in the largest unit that keeps it readable: 850 ms, 12.3 s, 4 min, 2.5 h, 3 d. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

export interface TableRow<C extends string> {
  /** Attributes of the row (data-* that tests and styles find it by). */
  readonly attributes: Record<string, string>;
  readonly cells: Record<C, Child | readonly Child[]>;
}

/**
 * A table that turns into one card per row on a narrow screen (console.css):
 * each cell carries its column's name, shown beside it there.
 */
export function cardTable<C extends string>(
  caption: string,
  columns: readonly C[],
  rows: ReadonlyArray<TableRow<C>>,
): HTMLDivElement {
  const head = el('tr', {});
  for (const column of columns) head.append(el('th', { scope: 'col' }, column));
  const body = el('tbody', {});
  for (const row of rows) {
    const tr = el('tr', row.attributes);
    for (const column of columns) {
      const given = row.cells[column];
      const content = (Array.isArray(given) ? given : [given as Child]).filter((c) => c !== null && c !== undefined);
      // One box per cell, so that on a narrow screen its parts wrap beside the label, not under it.
      tr.append(el('td', { 'data-label': column }, content.length === 0 ? null : el('div', {}, ...content)));
    }
    body.append(tr);
  }
  const table = el(
    'table',
    { class: 'cards' },
    el('caption', { class: 'visually-hidden' }, caption),
    el('thead', {}, head),
    body,
  );
  return el('div', { class: 'scroll' }, table);
}
