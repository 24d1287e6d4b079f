// Every relative link and #anchor in README.md and docs/*.md resolves: the
// README was split into topic pages, and a moved heading or a page renamed
// later must not leave a reader at a dead link.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';

const pages = [
  'README.md',
  ...fs
    .readdirSync(path.join(PACKAGE_ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

// Fenced code and inline code hold no links (and may hold `#` lines).
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, '');
}

// GitHub's heading anchors: lower case, punctuation dropped (hyphens and
// underscores kept), spaces to hyphens; a repeated heading gets -1, -2, ….
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const withoutFences = markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');
  for (const match of withoutFences.matchAll(/^#{1,6} (.+)$/gm)) {
    const base = (match[1] ?? '')
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}_\- ]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

function targetsOf(markdown: string): string[] {
  const text = prose(markdown);
  const targets: string[] = [];
  for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) targets.push(match[1] ?? '');
  for (const match of text.matchAll(/<img [^>]*src="([^"]+)"/g)) targets.push(match[1] ?? '');
  return targets.filter((target) => !/^[a-z][a-z+.-]*:/i.test(target));
}

t.test('the anchor rule matches GitHub on the headings this project uses', async (t) => {
  t.same(
    [
      ...anchorsOf(
        '## Writing a participant: the kit\n### What each entry point needs\n## `commitd/client`\n## A\n## A\n',
      ),
    ],
    ['writing-a-participant-the-kit', 'what-each-entry-point-needs', 'commitdclient', 'a', 'a-1'],
  );
});

t.test('the README and the topic pages link to each other', async (t) => {
  const readme = fs.readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8');
  for (const page of pages.filter((page) => page !== 'README.md')) {
    t.ok(
      targetsOf(readme).some((target) => target.split('#')[0] === page),
      `README links to ${page}`,
    );
    const text = fs.readFileSync(path.join(PACKAGE_ROOT, page), 'utf8');
    t.ok(
      targetsOf(text).some((target) => target.split('#')[0] === '../README.md'),
      `${page} links back to the README`,
    );
  }
});

t.test('every relative link and anchor resolves', async (t) => {
  let checked = 0;
  for (const page of pages) {
    const text = fs.readFileSync(path.join(PACKAGE_ROOT, page), 'utf8');
    for (const target of targetsOf(text)) {
      const [file = '', anchor] = target.split('#');
      const resolved =
        file === '' ? path.join(PACKAGE_ROOT, page) : path.resolve(path.dirname(path.join(PACKAGE_ROOT, page)), file);
      checked += 1;
      if (!fs.existsSync(resolved)) {
        t.fail(`${page}: ${target} names no file`);
        continue;
      }
      if (anchor !== undefined) {
        t.ok(
          resolved.endsWith('.md') && anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor),
          `${page}: ${target} names a heading`,
        );
      }
    }
  }
  t.ok(checked > 50, `checked ${checked} links`);
});
