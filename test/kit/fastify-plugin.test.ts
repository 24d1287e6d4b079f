// The kit as a fastify plugin on a real fastify server: the protocol under a
// prefix, signatures checked over the exact bytes received, and the
// service's own routes and JSON parsing left as they were.

import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import Fastify from 'fastify';
import t from 'tap';
import { participantPlugin } from '../../src/kit/fastify-plugin.js';
import { createParticipant } from '../../src/kit/participant.js';
import { signV1 } from '../../src/kit/signature.js';
import { SqliteParticipantStore } from '../../src/kit/sqlite-store.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startService } from '../support/service.js';
import { send } from './stock.js';

const secret = 'plugin-secret-0123456789';
const db = new Database(path.join(tempDir(), 'svc.db'));
db.exec('CREATE TABLE item (tx TEXT PRIMARY KEY, state TEXT NOT NULL)');
const participant = createParticipant<Database.Database>({
  store: new SqliteParticipantStore(db),
  signingSecret: secret,
  backgroundIntervalMs: 0,
  prepare: ({ transactionId, tx }) => {
    tx.prepare("INSERT INTO item VALUES (?, 'held')").run(transactionId);
    return 'yes';
  },
  commit: ({ transactionId, tx }) => {
    tx.prepare("UPDATE item SET state = 'done' WHERE tx = ?").run(transactionId);
  },
});
const app = Fastify();
const signatures: string[] = [];
app.addHook('onRequest', async (request) => {
  const signature = request.headers['x-commitd-signature'];
  if (typeof signature === 'string') signatures.push(signature);
});
app.post('/own', async (request) => ({ echoed: request.body }));
await app.register(participantPlugin, { prefix: '/tx', participant });
await app.listen({ host: '127.0.0.1', port: 0 });
const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
t.teardown(async () => {
  await app.close();
  await participant.close();
  db.close();
});

t.test('signed messages pass, unsigned ones are refused, the service route is untouched', async (t) => {
  // Whitespace a re-serialising parser would lose: the signature covers these exact bytes.
  const body = '{ "transactionId": "tx_plugin", "participant": "svc",  "payload": null }';
  const headers = (action: string) => {
    const timestamp = String(Date.now());
    const path = `/tx/${action}`;
    return {
      'x-commitd-transaction': 'tx_plugin',
      'x-commitd-timestamp': timestamp,
      'x-commitd-signature': `v1=${signV1(secret, { method: 'POST', path, transactionId: 'tx_plugin', timestamp, body })}`,
    };
  };
  t.equal((await send(`${url}/tx`, 'prepare', body)).status, 401);
  t.same((await send(`${url}/tx`, 'prepare', body, headers('prepare'))).body, { vote: 'yes' });
  t.equal((await send(`${url}/tx`, 'commit', body, headers('commit'))).status, 200);
  t.same(db.prepare('SELECT * FROM item').all(), [{ tx: 'tx_plugin', state: 'done' }]);
  const own = await call(url, 'POST', '/own', { a: 1 });
  t.same(own.body, { echoed: { a: 1 } }, "the service's JSON parser still parses its own routes");
  const big = await send(`${url}/tx`, 'prepare', 'x'.repeat(2 * 1024 * 1024), headers('prepare'));
  t.equal(big.status, 413);
});

t.test('a one-shot commit through a real commitd signing with the v1 format, when it does', async (t) => {
  const commitd = await startService(tempDir(), { COMMITD_SIGNING_SECRET: secret });
  t.teardown(() => commitd.kill('SIGTERM'));
  const res = await call(commitd.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'svc', url: `${url}/tx` }],
    commit: true,
  });
  // Until the coordinator's signer moves to v1 (another branch), commitd
  // signs `sha256=` over timestamp.body, which the kit must refuse; once it
  // sends v1, the transaction must commit. Which one is read off the wire.
  const sent = signatures.at(-1) ?? '';
  const signer = sent.startsWith('v1=') ? 'v1' : 'pre-v1';
  t.comment(`commitd's signer: ${signer}`);
  t.match(sent, /^(v1|sha256)=[0-9a-f]{64}$/, 'commitd signed the call');
  if (signer === 'v1') t.equal(res.body.state, 'committed', 'the kit accepts what commitd signs');
  else t.match(res.body.transaction.participants[0].reason, /401/, 'the kit refused the old format');
});
