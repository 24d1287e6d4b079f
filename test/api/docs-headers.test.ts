// /docs answers carry the console's frame and content-type headers
// (issue 23): no framing, no sniffing, no referrer, on every page and file.

import t from 'tap';
import { startHarness } from '../support/harness.js';

t.test('every /docs answer carries the page headers the console does', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close(true));
  const consolePage = await h.app.inject({ method: 'GET', url: '/console/' });
  t.equal(consolePage.statusCode, 200);
  for (const url of [
    '/docs',
    '/docs/',
    '/docs/static/index.html',
    '/docs/json',
    '/docs/yaml',
    '/docs/static/swagger-ui.css',
  ]) {
    const res = await h.app.inject({ method: 'GET', url });
    t.ok(res.statusCode < 400, `${url}: ${res.statusCode}`);
    for (const name of ['x-frame-options', 'x-content-type-options', 'referrer-policy']) {
      t.equal(res.headers[name], consolePage.headers[name], `${url}: ${name} as the console's`);
    }
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/, `${url}: no framing in the CSP`);
  }
});
