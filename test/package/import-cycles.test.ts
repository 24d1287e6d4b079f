// No import cycles in src: the house rule (no two files import each other,
// and no longer loop either), checked on every test run. The graph is read
// from the sources (static imports, re-exports and dynamic import() of
// relative paths, type-only ones included: a type cycle is a design cycle too).

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';

const SRC = path.join(PACKAGE_ROOT, 'src');
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"](\.{1,2}\/[^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** Each file's relative imports, as files (a `.js` specifier names its `.ts` source). */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const targets = new Set<string>();
    for (const match of text.matchAll(SPECIFIER)) {
      const resolved = path.resolve(path.dirname(file), match[1] as string);
      const candidates = [resolved.replace(/\.m?js$/, '.ts'), resolved.replace(/\.mjs$/, '.mts'), `${resolved}.ts`];
      const target = candidates.find((c) => known.has(c));
      if (target !== undefined) targets.add(target);
    }
    graph.set(file, [...targets]);
  }
  return graph;
}

/** Strongly connected components of more than one file, or of one file importing itself (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

t.test('the checker finds a cycle when there is one', async (t) => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  t.same(cycles(graph), [['a', 'b', 'c']]);
  t.same(cycles(new Map([['a', ['a']]])), [['a']]);
  t.same(
    cycles(
      new Map([
        ['a', ['b']],
        ['b', []],
      ]),
    ),
    [],
  );
});

t.test('no file in src takes part in an import cycle', async (t) => {
  const files = sourceFiles(SRC);
  const graph = importGraph(files);
  t.ok(graph.size > 50, `read ${graph.size} files`);
  t.ok(
    [...graph.values()].some((targets) => targets.length > 0),
    'imports were found',
  );
  const rel = (f: string) => path.relative(PACKAGE_ROOT, f);
  t.same(
    cycles(graph).map((c) => c.map(rel)),
    [],
    'import cycles',
  );
});
