// The request target: an absolute form naming another host is refused, and
// a forwarded call's target is rebuilt from what was routed.

import t from 'tap';
import { absoluteFormRefusal, routedTarget } from '../../src/api/request-target.js';

t.test('origin form and an absolute form naming the Host pass', async (t) => {
  t.equal(absoluteFormRefusal('/v1/transactions/x', 'anything'), null);
  t.equal(absoluteFormRefusal('http://127.0.0.1:8080/v1/transactions/x?y', '127.0.0.1:8080'), null);
  t.equal(absoluteFormRefusal('HTTP://Commitd.Internal/v1/x', 'commitd.internal:80'), null);
});

t.test('an absolute form naming anything else is refused', async (t) => {
  for (const [target, host] of [
    ['http://127.0.0.1:9199/v1/transactions/x?x', '127.0.0.1:8080'],
    ['http://127.0.0.1:8080/v1/transactions/x', undefined],
    ['https://user@127.0.0.1:8080/v1/x', '127.0.0.1:8080'],
    ['ftp://127.0.0.1:8080/v1/x', '127.0.0.1:8080'],
    ['http://[::1/v1/x', '[::1]'],
    ['http://evil/v1/x', 'evil/v1'],
  ] as const) {
    t.type(absoluteFormRefusal(target, host), 'string', `${target} with Host ${host}`);
  }
});

t.test('a forwarded target is the route with its parameters encoded, and the query', async (t) => {
  t.equal(routedTarget('/v1/transactions/:id/commit', { id: 'tx_1' }, {}), '/v1/transactions/tx_1/commit');
  t.equal(
    routedTarget('/v1/transactions/:id', { id: '../a/b?c#d' }, { x: '' }),
    '/v1/transactions/..%2Fa%2Fb%3Fc%23d?x=',
  );
  t.equal(routedTarget('/v1/transactions', {}, { a: ['1', '2'] }), '/v1/transactions?a=1&a=2');
  t.equal(routedTarget('/v1/transactions/:id', {}, {}), null, 'a missing parameter');
  t.equal(routedTarget(undefined, {}, {}), null);
  t.equal(routedTarget('//evil/x', {}, {}), null);
  const owner = 'http://10.0.0.5:8080/';
  t.equal(new URL(routedTarget('/v1/transactions/:id', { id: '//evil:1' }, {}) as string, owner).host, '10.0.0.5:8080');
});
