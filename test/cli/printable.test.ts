// What the CLI prints of text from participants and operators: control
// characters and bidirectional-override characters escaped (issue 23).

import t from 'tap';
import { printable } from '../../src/cli/table.js';

t.test('control characters are escaped', async (t) => {
  t.equal(printable('a\u001b[31mb\u0007'), 'a\\u001b[31mb\\u0007');
  t.equal(printable('x\u009by'), 'x\\u009by');
});

t.test('bidirectional overrides, embeddings, isolates and marks are escaped', async (t) => {
  // "refunded" shown to an operator as if it read otherwise: RLO ... PDF.
  t.equal(printable('ok \u202edednufer\u202c'), 'ok \\u202edednufer\\u202c');
  for (const c of [
    '\u061c',
    '\u200e',
    '\u200f',
    '\u202a',
    '\u202b',
    '\u202d',
    '\u2066',
    '\u2067',
    '\u2068',
    '\u2069',
  ]) {
    t.equal(
      printable(`a${c}b`),
      `a\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}b`,
      `U+${c.charCodeAt(0).toString(16)}`,
    );
  }
  t.equal(printable('line\u2028break\u2029'), 'line\\u2028break\\u2029');
});

t.test('ordinary text, accents and right-to-left letters pass unchanged', async (t) => {
  const text = 'Zahlung bestätigt — تم الدفع — 支付 ✓';
  t.equal(printable(text), text);
});
