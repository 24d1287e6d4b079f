// Plain-text output for people: aligned columns, key/value blocks, ages, and
// text from the network made safe to print on a terminal.

/**
 * The widest a cell gets in a table, and the last column's (nothing to its
 * right to push away); longer text is cut with an ellipsis (`--json` has it whole).
 */
const CELL_CHARS_MAX = 72;
const LAST_CELL_CHARS_MAX = 200;
const GAP = '  ';

/** Rows under a header, each column as wide as its widest cell; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const last = header.length - 1;
  const cells = [header, ...rows].map((row) =>
    row.map((cell, i) => cut(printable(cell), i === last ? LAST_CELL_CHARS_MAX : CELL_CHARS_MAX)),
  );
  const widths = header.map((_, i) => Math.max(...cells.map((row) => length(row[i] ?? ''))));
  return cells
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - length(cell))))
        .join(GAP)
        .trimEnd(),
    )
    .join('\n');
}

/** `key  value` lines, the values aligned; a null or empty value prints as `-`. */
export function keyValues(pairs: readonly (readonly [string, string | null])[]): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}${GAP}${v === null || v === '' ? '-' : printable(v)}`).join('\n');
}

/** 850ms, 12s, 4m 10s, 2h 5m, 3d 4h: two units at most, enough to judge an age. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const units: [string, number][] = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ];
  const parts: string[] = [];
  let rest = Math.floor(ms);
  for (const [name, size] of units) {
    if (rest >= size || parts.length > 0) {
      parts.push(`${Math.floor(rest / size)}${name}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/**
 * Control characters escaped: reasons, errors and notes come from
 * participants and operators, and must not move the cursor or recolour an
 * operator's terminal. Nor reorder what it shows: the bidirectional
 * overrides, embeddings, isolates and marks (U+061C, U+200E-U+200F,
 * U+202A-U+202E, U+2066-U+2069) would make a line read other than it is (a
 * name shown reversed, a reason appearing to say another participant's
 * answer), and the line and paragraph separators (U+2028, U+2029) break a line.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function cut(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

function length(text: string): number {
  return [...text].length;
}
