import fc from 'fast-check';
import { escapeLiteral } from 'pg';
import t from 'tap';
import {
  DEPLOYMENT_ID_MAX_CHARS,
  DEPLOYMENT_ID_PATTERN,
  LEGACY_XA_FORMAT_ID,
  legacyPostgresGid,
  legacyXaXidLiteral,
  nameProblem,
  parsePostgresGid,
  parseXaRecoverRow,
  postgresGid,
  postgresLiteral,
  XA_FORMAT_ID,
  XA_PART_MAX_BYTES,
  xaXidLiteral,
  xaXidText,
} from '../../../src/participants/databases/transaction-names.js';

const TX = 'tx_01JF3Q9Z8X7W6V5T4S3R2Q1P0N';
const DEP = '0f3a9c1e5b7d2a48';

t.test('the PostgreSQL gid is commitd-<deployment>:<transaction id>:<participant> and parses back', async (t) => {
  t.equal(postgresGid(DEP, TX, 'orders'), `commitd-${DEP}:${TX}:orders`);
  t.same(parsePostgresGid(`commitd-${DEP}:${TX}:orders`), { deployment: DEP, txId: TX, participant: 'orders' });
  // Participant names may hold colons; deployments and transaction ids never do.
  t.same(parsePostgresGid(postgresGid(DEP, TX, 'a:b:c')), { deployment: DEP, txId: TX, participant: 'a:b:c' });
  t.equal(parsePostgresGid(`other:${TX}:orders`), null, "someone else's gid");
  t.equal(parsePostgresGid('commitd-'), null);
  t.equal(parsePostgresGid(`commitd-${DEP}:${TX}`), null, 'no participant');
  t.equal(parsePostgresGid(`commitd-${DEP}:${TX}:`), null, 'empty participant');
  t.equal(parsePostgresGid(`commitd-${DEP}::orders`), null, 'empty transaction id');
  t.equal(parsePostgresGid(`commitd-:${TX}:orders`), null, 'empty deployment');
});

t.test("an older build's gid (no deployment) still parses, as one of no deployment", async (t) => {
  t.equal(legacyPostgresGid(TX, 'orders'), `commitd:${TX}:orders`, 'as the older build wrote it');
  t.same(parsePostgresGid(`commitd:${TX}:orders`), { deployment: null, txId: TX, participant: 'orders' });
  t.same(parsePostgresGid(`commitd:${TX}:a:b`), { deployment: null, txId: TX, participant: 'a:b' });
  t.equal(parsePostgresGid(`commitd:${TX}`), null, 'no participant');
  t.equal(parsePostgresGid('commitd::orders'), null, 'empty transaction id');
  t.notOk(postgresGid(DEP, TX, 'orders').startsWith('commitd:'), "an older build's scan does not see the new names");
});

t.test('the gid literal is escaped, whatever the name holds', async (t) => {
  t.equal(postgresLiteral(postgresGid(DEP, TX, 'orders')), `'commitd-${DEP}:${TX}:orders'`);
  t.equal(postgresLiteral(postgresGid(DEP, TX, "o'rders")), `'commitd-${DEP}:${TX}:o''rders'`, 'a quote is doubled');
  t.equal(
    postgresLiteral(postgresGid(DEP, TX, 'a\\b')),
    ` E'commitd-${DEP}:${TX}:a\\\\b'`,
    'a backslash cannot escape the quote',
  );
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
  t.equal(XA_FORMAT_ID, 0x636d7432, "'cmt2'");
  t.equal(LEGACY_XA_FORMAT_ID, 1_668_117_604, "'cmtd', an older build's");
  t.equal(xaXidLiteral('d1', 'tx_A', 'orders'), `X'64313a74785f41',X'6f7264657273',${XA_FORMAT_ID}`);
  t.equal(legacyXaXidLiteral('tx_A', 'orders'), `X'74785f41',X'6f7264657273',${LEGACY_XA_FORMAT_ID}`);
  t.equal(xaXidText(DEP, TX, 'orders'), `'${DEP}:${TX}','orders',${XA_FORMAT_ID}`);
  t.equal(xaXidText(DEP, TX, "o'x"), `'${DEP}:${TX}','o''x',${XA_FORMAT_ID}`);
  t.throws(() => xaXidText(DEP, TX, 'a\\b'), 'a backslash is refused rather than guessed at');
  const longest = 'd'.repeat(DEPLOYMENT_ID_MAX_CHARS);
  t.ok(Buffer.byteLength(`${longest}:${TX}`) <= XA_PART_MAX_BYTES, 'the longest deployment fits a gtrid');
});

t.test('XA RECOVER rows: only commitd format ids, lengths that add up, the deployment read off', async (t) => {
  const gtrid = `${DEP}:${TX}`;
  const data = Buffer.from(`${gtrid}orders`);
  const row = { formatID: XA_FORMAT_ID, gtrid_length: gtrid.length, bqual_length: 6, data };
  t.same(parseXaRecoverRow(row), { deployment: DEP, txId: TX, participant: 'orders' });
  t.equal(parseXaRecoverRow({ ...row, formatID: 1 }), null, 'another format id');
  t.equal(parseXaRecoverRow({ ...row, bqual_length: 7 }), null, 'lengths that do not match the data');
  t.equal(parseXaRecoverRow({ ...row, gtrid_length: 0, bqual_length: data.length }), null, 'empty gtrid');
  const noDeployment = Buffer.from(`${TX}orders`);
  t.equal(
    parseXaRecoverRow({ ...row, gtrid_length: TX.length, data: noDeployment }),
    null,
    'a gtrid without a deployment under the new format id',
  );
  t.same(
    parseXaRecoverRow({ formatID: LEGACY_XA_FORMAT_ID, gtrid_length: TX.length, bqual_length: 6, data: noDeployment }),
    { deployment: null, txId: TX, participant: 'orders' },
    "an older build's xid: no deployment",
  );
});

t.test('names too long for the database are refused before anything is prepared', async (t) => {
  t.equal(nameProblem('mysql', 29, 'a'.repeat(64)), null, '64 bytes fit a bqual');
  t.match(nameProblem('mysql', 29, 'a'.repeat(65)), /at most 64 bytes/);
  t.equal(nameProblem('postgres', 29, 'a'.repeat(128)), null, 'the longest participant name fits a gid');
  t.match(nameProblem('postgres', 29, 'a'.repeat(129)), /at most 199 bytes/);
  const longest = postgresGid('d'.repeat(DEPLOYMENT_ID_MAX_CHARS), TX, 'a'.repeat(128));
  t.equal(Buffer.byteLength(longest), 199, 'with the longest deployment, exactly the limit');
});

t.test('deployment ids: 1-32 characters that need no quoting', async (t) => {
  for (const ok of [DEP, 'a', 'prod-eu_1', 'd'.repeat(32)]) t.ok(DEPLOYMENT_ID_PATTERN.test(ok), ok);
  for (const bad of ['', '-a', 'a:b', "a'b", 'a b', 'd'.repeat(33), 'é']) t.notOk(DEPLOYMENT_ID_PATTERN.test(bad), bad);
});
