import fc from 'fast-check';
import { escapeLiteral } from 'pg';
import t from 'tap';
import {
  nameProblem,
  parsePostgresGid,
  parseXaRecoverRow,
  postgresGid,
  postgresGidLiteral,
  postgresLiteral,
  XA_FORMAT_ID,
  xaXidLiteral,
  xaXidText,
} from '../../../src/participants/databases/transaction-names.js';

const TX = 'tx_01JF3Q9Z8X7W6V5T4S3R2Q1P0N';

t.test('the PostgreSQL gid is commitd:<transaction id>:<participant> and parses back', async (t) => {
  t.equal(postgresGid(TX, 'orders'), `commitd:${TX}:orders`);
  t.same(parsePostgresGid(`commitd:${TX}:orders`), { txId: TX, participant: 'orders' });
  // Participant names may hold colons; transaction ids never do.
  t.same(parsePostgresGid(postgresGid(TX, 'a:b:c')), { txId: TX, participant: 'a:b:c' });
  t.equal(parsePostgresGid(`other:${TX}:orders`), null, "someone else's gid");
  t.equal(parsePostgresGid('commitd:'), null);
  t.equal(parsePostgresGid(`commitd:${TX}`), null, 'no participant');
  t.equal(parsePostgresGid(`commitd:${TX}:`), null, 'empty participant');
  t.equal(parsePostgresGid('commitd::orders'), null, 'empty transaction id');
});

t.test('the gid literal is escaped, whatever the name holds', async (t) => {
  t.equal(postgresGidLiteral(TX, 'orders'), `'commitd:${TX}:orders'`);
  t.equal(postgresGidLiteral(TX, "o'rders"), `'commitd:${TX}:o''rders'`, 'a quote is doubled');
  t.equal(postgresGidLiteral(TX, 'a\\b'), ` E'commitd:${TX}:a\\\\b'`, 'a backslash cannot escape the quote');
});

t.test("the literal is pg's escapeLiteral, byte for byte, for any text", async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom('a', "'", '\\', 'E', ' ', '"', 'é', '\n') }), (text) => {
      return postgresLiteral(text) === escapeLiteral(text);
    }),
    { numRuns: 2000 },
  );
  fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (text) => postgresLiteral(text) === escapeLiteral(text)));
  t.pass('2,000 strings over quotes and backslashes, and 100 of any characters, agree');
});

t.test('the XA xid: hexadecimal literals for commitd, quoted text for the view, both the same bytes', async (t) => {
  t.equal(XA_FORMAT_ID, 1_668_117_604, "'cmtd'");
  t.equal(xaXidLiteral('tx_A', 'orders'), `X'74785f41',X'6f7264657273',${XA_FORMAT_ID}`);
  t.equal(xaXidText(TX, 'orders'), `'${TX}','orders',${XA_FORMAT_ID}`);
  t.equal(xaXidText(TX, "o'x"), `'${TX}','o''x',${XA_FORMAT_ID}`);
  t.throws(() => xaXidText(TX, 'a\\b'), 'a backslash is refused rather than guessed at');
});

t.test('XA RECOVER rows: only commitd format ids, lengths that add up', async (t) => {
  const data = Buffer.from(`${TX}orders`);
  const row = { formatID: XA_FORMAT_ID, gtrid_length: TX.length, bqual_length: 6, data };
  t.same(parseXaRecoverRow(row), { txId: TX, participant: 'orders' });
  t.equal(parseXaRecoverRow({ ...row, formatID: 1 }), null, 'another format id');
  t.equal(parseXaRecoverRow({ ...row, bqual_length: 7 }), null, 'lengths that do not match the data');
  t.equal(parseXaRecoverRow({ ...row, gtrid_length: 0, bqual_length: data.length }), null, 'empty gtrid');
});

t.test('names too long for the database are refused before anything is prepared', async (t) => {
  t.equal(nameProblem('mysql', 29, 'a'.repeat(64)), null, '64 bytes fit a bqual');
  t.match(nameProblem('mysql', 29, 'a'.repeat(65)), /at most 64 bytes/);
  t.equal(nameProblem('postgres', 29, 'a'.repeat(128)), null, 'the longest participant name fits a gid');
  t.match(nameProblem('postgres', 29, 'a'.repeat(162)), /at most 199 bytes/);
});
