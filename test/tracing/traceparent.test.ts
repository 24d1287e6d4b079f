import t from 'tap';
import { formatTraceParent, normalizeTraceParent, parseTraceParent, traceIdOf } from '../../src/tracing/traceparent.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;

t.test('a version 00 header is read field by field and kept as it came', async (t) => {
  t.same(parseTraceParent(VALID), { traceId: TRACE, parentId: PARENT, traceFlags: 1 });
  t.same(parseTraceParent(`00-${TRACE}-${PARENT}-00`), { traceId: TRACE, parentId: PARENT, traceFlags: 0 });
  t.same(parseTraceParent(`00-${TRACE}-${PARENT}-ff`)?.traceFlags, 255, 'flags not defined yet are read, not refused');
  t.equal(normalizeTraceParent(VALID), VALID);
  t.equal(traceIdOf(normalizeTraceParent(VALID)), TRACE);
  t.equal(traceIdOf(null), null);
});

t.test('a later version is read from its first 55 characters and kept as version 00', async (t) => {
  t.equal(normalizeTraceParent(`01-${TRACE}-${PARENT}-01`), VALID);
  t.equal(normalizeTraceParent(`cc-${TRACE}-${PARENT}-01-what-comes-later`), VALID);
  t.equal(normalizeTraceParent(`cc-${TRACE}-${PARENT}-01what`), null, 'more must start with "-"');
});

t.test('anything else is not a traceparent: null, never an exception', async (t) => {
  const invalid: Array<[string, unknown]> = [
    ['absent', undefined],
    ['null', null],
    ['empty', ''],
    ['a header sent twice (joined by Node)', `${VALID}, ${VALID}`],
    ['an array', [VALID, VALID]],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['version 00 with more after it', `${VALID}-00`],
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['upper-case version', `0A-${TRACE}-${PARENT}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['an all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['a short trace id', `00-${TRACE.slice(1)}-${PARENT}-01`],
    ['a long parent id', `00-${TRACE}-${PARENT}0-01`],
    ['one flag digit', `00-${TRACE}-${PARENT}-1`],
    ['non-hex flags', `00-${TRACE}-${PARENT}-0g`],
    ['other separators', `00_${TRACE}_${PARENT}_01`],
    ['spaces inside', `00- ${TRACE.slice(1)}-${PARENT}-01`],
  ];
  for (const [what, header] of invalid) {
    t.equal(parseTraceParent(header as string), null, what);
    t.equal(normalizeTraceParent(header as string), null, what);
  }
});

t.test('a span is written as a version 00 header', async (t) => {
  t.equal(formatTraceParent(TRACE, PARENT, 1), VALID);
  t.equal(formatTraceParent(TRACE, PARENT, 0), `00-${TRACE}-${PARENT}-00`);
  t.equal(formatTraceParent(TRACE, PARENT, 0x1ff), `00-${TRACE}-${PARENT}-ff`, 'eight bits of flags');
});
