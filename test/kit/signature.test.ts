// The v1 signature verifier against a vector computed here from the written
// definition (not from the kit's signer), and every way a call can fail it.

import { createHmac } from 'node:crypto';
import t from 'tap';
import { signV1, verifySignature } from '../../src/kit/signature.js';

const secret = 's3cr3t';
const timestamp = '1764547200000';
const transactionId = 'tx_01KITVECTOR';
const path = '/tx/prepare';
const body = '{"transactionId":"tx_01KITVECTOR","participant":"orders","payload":{"sku":"é"}}';
// S = "v1\n" + timestamp + "\n" + METHOD + "\n" + path + "\n" + transactionId + "\n" + body
const S = ['v1', timestamp, 'POST', path, transactionId, body].join('\n');
const expected = createHmac('sha256', secret).update(Buffer.from(S, 'utf8')).digest('hex');
const nowMs = Number(timestamp) + 1000;

const good = { method: 'POST', path, transactionId, timestamp, signature: `v1=${expected}`, body };

t.test('the signer matches the definition, and the verifier accepts it', async (t) => {
  t.equal(signV1(secret, { method: 'post', path, transactionId, timestamp, body }), expected);
  t.equal(signV1(secret, { method: 'POST', path, transactionId, timestamp, body: Buffer.from(body) }), expected);
  t.same(verifySignature(good, { secrets: [secret], nowMs }), { ok: true });
  t.same(verifySignature(good, { secrets: ['old', secret], nowMs }), { ok: true }, 'any secret of a rotation');
});

t.test('refused: unsigned, malformed, wrong, bound to something else, too old or too new', async (t) => {
  const refuse = (input: Partial<typeof good> & Record<string, unknown>, why: RegExp, o = {}) => {
    const verdict = verifySignature({ ...good, ...input } as typeof good, { secrets: [secret], nowMs, ...o });
    t.equal(verdict.ok, false, JSON.stringify(input));
    if (!verdict.ok) t.match(verdict.reason, why);
  };
  refuse({ signature: undefined }, /not signed/);
  refuse({ timestamp: undefined }, /not signed/);
  refuse({ transactionId: undefined }, /not signed/);
  refuse({ signature: expected }, /v1=/, {});
  refuse({ signature: `sha256=${expected}` }, /v1=/);
  refuse({ signature: `v1=${expected.toUpperCase()}` }, /v1=/);
  refuse({ signature: `v1=${expected.slice(0, 62)}` }, /v1=/);
  refuse({ timestamp: '17645472e5' }, /malformed/);
  refuse({ signature: `v1=${'0'.repeat(64)}` }, /does not match/);
  refuse({ method: 'PUT' }, /does not match/);
  refuse({ path: '/tx/commit' }, /does not match/, {});
  refuse({ transactionId: 'tx_01OTHER' }, /does not match/);
  refuse({ body: body.replace('orders', 'orderz') }, /does not match/);
  refuse({ body: `${body} ` }, /does not match/);
  refuse({}, /does not match/, { secrets: ['another'] });
  refuse({}, /no signing secret/, { secrets: [] });
  // A correct signature outside the window: a replay, or a clock far off.
  refuse({}, /away from this host's clock/, { nowMs: Number(timestamp) + 5 * 60_000 + 1 });
  refuse({}, /away from this host's clock/, { nowMs: Number(timestamp) - 5 * 60_000 - 1 });
  refuse({}, /away from this host's clock/, { nowMs: Number(timestamp) + 2000, windowMs: 1000 });
  t.same(verifySignature(good, { secrets: [secret], nowMs: Number(timestamp) + 5 * 60_000 }), { ok: true }, 'edge');
});
