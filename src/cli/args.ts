// The command-line flags of `commitd`, of every bench/ command and of the
// simulator's CLI, parsed one way: node's util.parseArgs (strict: an unknown flag or a
// missing value is an error) and then each value checked against its
// declared kind and bounds, so `--seconds ten` or `--clients 0` stops the
// command with a message naming the flag instead of running with NaN.

import { parseArgs } from 'node:util';

interface IntFlag<D> {
  readonly kind: 'int';
  readonly min: number;
  readonly max: number;
  readonly fallback: D;
}
interface NumberFlag<D> {
  readonly kind: 'number';
  readonly min: number;
  readonly max: number;
  readonly fallback: D;
}
interface StringFlag<D> {
  readonly kind: 'string';
  readonly fallback: D;
}
interface SwitchFlag {
  readonly kind: 'switch';
}
interface RangeFlag {
  readonly kind: 'range';
  readonly max: number;
  readonly fallback: readonly [number, number];
}

export type Flag =
  | IntFlag<number | undefined>
  | NumberFlag<number | undefined>
  | StringFlag<string | undefined>
  | SwitchFlag
  | RangeFlag;

/** An integer from min to max; without a fallback, undefined when not given. */
export function int(min: number, max: number): IntFlag<undefined>;
export function int(min: number, max: number, fallback: number): IntFlag<number>;
export function int(min: number, max: number, fallback?: number): IntFlag<number | undefined> {
  return { kind: 'int', min, max, fallback };
}

/** A number from min to max (fractions allowed). */
export function num(min: number, max: number, fallback: number): NumberFlag<number> {
  return { kind: 'number', min, max, fallback };
}

export function str(): StringFlag<undefined>;
export function str(fallback: string): StringFlag<string>;
export function str(fallback?: string): StringFlag<string | undefined> {
  return { kind: 'string', fallback };
}

/** A flag without a value: true when given. */
export function on(): SwitchFlag {
  return { kind: 'switch' };
}

/** MIN,MAX: two integers, MIN <= MAX <= max. */
export function range(max: number, fallback: readonly [number, number]): RangeFlag {
  return { kind: 'range', max, fallback };
}

type ValueOf<F> = F extends SwitchFlag
  ? boolean
  : F extends RangeFlag
    ? [number, number]
    : F extends IntFlag<infer D> | NumberFlag<infer D> | StringFlag<infer D>
      ? D
      : never;

export type Values<S extends Record<string, Flag>> = { -readonly [K in keyof S]: ValueOf<S[K]> };

export interface Parsed<S extends Record<string, Flag>> {
  readonly values: Values<S>;
  readonly positionals: string[];
}

/**
 * Parses `argv` (without node and the script) against `flags`, keyed by the
 * flag's name without its dashes (`'no-fraction'` is `--no-fraction`).
 * Positional arguments are refused unless `allowPositionals`.
 */
export function parseFlags<S extends Record<string, Flag>>(
  argv: readonly string[],
  flags: S,
  options: { allowPositionals?: boolean } = {},
): Parsed<S> {
  const parsed = parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: options.allowPositionals ?? false,
    options: Object.fromEntries(
      Object.entries(flags).map(([name, f]) => [name, { type: f.kind === 'switch' ? 'boolean' : 'string' }] as const),
    ),
  });
  const values: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(flags)) {
    const given = (parsed.values as Record<string, string | boolean | undefined>)[name];
    values[name] = given === undefined ? fallbackOf(f) : convert(`--${name}`, f, given);
  }
  return { values: values as Values<S>, positionals: parsed.positionals };
}

function fallbackOf(f: Flag): unknown {
  if (f.kind === 'switch') return false;
  if (f.kind === 'range') return [...f.fallback];
  return f.fallback;
}

function convert(flag: string, f: Flag, given: string | boolean): unknown {
  if (f.kind === 'switch') return given === true;
  const text = String(given);
  switch (f.kind) {
    case 'string':
      return text;
    case 'int': {
      const n = Number(text);
      if (text.trim() === '' || !Number.isInteger(n) || n < f.min || n > f.max) {
        throw new Error(`${flag} takes an integer from ${f.min} to ${f.max}, got ${JSON.stringify(text)}`);
      }
      return n;
    }
    case 'number': {
      const n = Number(text);
      if (text.trim() === '' || !(n >= f.min && n <= f.max)) {
        throw new Error(`${flag} takes a number from ${f.min} to ${f.max}, got ${JSON.stringify(text)}`);
      }
      return n;
    }
    case 'range': {
      const m = /^(\d+),(\d+)$/.exec(text);
      const lo = Number(m?.[1]);
      const hi = Number(m?.[2]);
      if (!m || lo > hi || hi > f.max) throw new Error(`${flag} takes MIN,MAX in milliseconds, at most ${f.max}`);
      return [lo, hi];
    }
  }
}
