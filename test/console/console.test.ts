// The operator console (issue 12) in a real browser: Debian's chromium,
// driven by playwright-core, against a real commitd process with tokens and
// real participant servers (scenario.ts). An operator signs in, sees a
// committed and a stuck transaction, opens the stuck one (participants,
// history), retries it, resolves a heuristic outcome with a note, aborts an
// undecided one; a wrong token is refused
// with the problem's detail; the page logs no error; it fits a 375 px
// screen; values from the server are shown as text, never run as markup.

import fs from 'node:fs';
import type { ConsoleMessage, Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { tempDir } from '../support/harness.js';
import {
  ADMIN_TOKEN,
  api,
  CHROMIUM,
  CLIENT_TOKEN,
  launchBrowser,
  type Scenario,
  signIn,
  startScenario,
} from './scenario.js';

const BROWSER_WAIT_MS = 15_000;
const REFRESHES_MAX = 50;

if (!fs.existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)`);
} else {
  t.test('the console', async (t) => {
    const scenario = await startScenario(tempDir('commitd-console-'));
    t.teardown(() => scenario.close());
    const browser = await launchBrowser();
    t.teardown(() => browser.close());

    t.test('is served from memory with strict headers, and without a token', async (t) => {
      await servedFiles(t, scenario);
    });

    t.test('an operator signs in, looks and acts', async (t) => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      t.teardown(() => context.close());
      const page = await context.newPage();
      page.setDefaultTimeout(BROWSER_WAIT_MS);
      const problems = watchErrors(page);
      await operatorSession(t, page, scenario);
      t.same(problems, [], 'no console errors, no page errors');
    });

    t.test('a wrong token is refused with the problem detail, and nothing is shown', async (t) => {
      const context = await browser.newContext();
      t.teardown(() => context.close());
      const page = await context.newPage();
      page.setDefaultTimeout(BROWSER_WAIT_MS);
      const problems = watchErrors(page);
      await signIn(page, scenario.url, 'not-the-admin-token-0123456789');
      await page.getByRole('alert').filter({ hasText: 'the token is not known' }).waitFor();
      t.ok(await page.locator('#login').isVisible(), 'still asking for a token');
      t.notOk(await page.locator('#overview').isVisible(), 'no overview');
      t.equal(await page.evaluate<number>('sessionStorage.length'), 0, 'the wrong token is not kept');
      // A client token is known but may not read the list: 403, said just as plainly.
      await page.getByLabel('Admin token').fill(CLIENT_TOKEN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').filter({ hasText: 'a client token may not call' }).waitFor();
      // The browser reports the refused calls themselves (401, 403) as
      // failed loads; nothing else may appear.
      t.same(
        problems.filter((p) => !/status of 40[13]/.test(p)),
        [],
        'no other console error',
      );
    });

    t.test('on a 375 px wide screen nothing is wider than the screen', async (t) => {
      const context = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true });
      t.teardown(() => context.close());
      const page = await context.newPage();
      page.setDefaultTimeout(BROWSER_WAIT_MS);
      const problems = watchErrors(page);
      await signIn(page, scenario.url, ADMIN_TOKEN);
      await page.locator(`tr[data-id="${scenario.stuckId}"]`).waitFor();
      t.ok(await fitsWidth(page), 'the list fits');
      await page.locator(`tr[data-id="${scenario.stuckId}"] a`).click();
      await page.locator('#tx-history li').first().waitFor();
      t.ok(await fitsWidth(page), 'a transaction fits');
      t.same(problems, [], 'no console errors');
    });
  });
}

/** Console errors and uncaught exceptions of a page, as they come. */
function watchErrors(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return problems;
}

/** Waits until the list shows `count` rows. */
async function rows(page: Page, count: number): Promise<void> {
  // A function, not a string: the page's CSP forbids eval, and a string predicate is evaluated in the page.
  await page.waitForFunction(
    (n) => (globalThis as any).document.querySelectorAll('#list-body tbody tr').length === n,
    count,
  );
}

async function fitsWidth(page: Page): Promise<boolean> {
  return page.evaluate<boolean>('document.documentElement.scrollWidth <= window.innerWidth');
}

async function servedFiles(t: Test, scenario: Scenario): Promise<void> {
  const page = await fetch(`${scenario.url}/console`);
  t.equal(page.status, 200, 'the page needs no token');
  t.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/);
  const csp = page.headers.get('content-security-policy') ?? '';
  t.match(csp, /default-src 'self'/, 'a content security policy');
  t.match(csp, /script-src 'self'(;|$)/, 'scripts from this origin only, none inline');
  t.equal(page.headers.get('x-content-type-options'), 'nosniff');
  t.equal(page.headers.get('cache-control'), 'no-cache');
  const html = await page.text();
  t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
  t.notMatch(html, /https?:\/\//, 'nothing from another site');
  const etag = page.headers.get('etag');
  t.ok(etag, 'an etag');
  const again = await fetch(`${scenario.url}/console/`, { headers: { 'if-none-match': etag ?? '' } });
  t.equal(again.status, 304, 'unchanged: 304');
  const script = await fetch(`${scenario.url}/console/app.js`);
  t.equal(script.status, 200);
  t.match(script.headers.get('content-type'), /^text\/javascript/);
  t.equal(script.headers.get('x-content-type-options'), 'nosniff');
  const style = await fetch(`${scenario.url}/console/console.css`);
  t.match(style.headers.get('content-type'), /^text\/css/);
  const missing = await fetch(`${scenario.url}/console/nothing.js`);
  t.equal(missing.status, 404);
  t.match(missing.headers.get('content-type'), /^application\/problem\+json/);
  const data = await fetch(`${scenario.url}/v1/stats`);
  t.equal(data.status, 401, 'the data it shows still needs the admin token');
}

async function operatorSession(t: Test, page: Page, s: Scenario): Promise<void> {
  await signIn(page, s.url, ADMIN_TOKEN);
  t.equal(
    await page.evaluate<string | null>("sessionStorage.getItem('commitd.adminToken')"),
    ADMIN_TOKEN,
    'the token is kept in session storage',
  );
  t.equal(await page.evaluate<number>('localStorage.length'), 0, 'and nowhere else');

  // The overview, refreshed from /v1/stats.
  const overview = page.locator('#overview-body');
  await overview.getByText('Stuck participants').waitFor();
  t.match(await overview.textContent(), /In flight: preparing\s*1(?!\d)/, 'the undecided transaction is in flight');
  t.match(await overview.textContent(), /Stuck participants \(3\+ attempts\)\s*1(?!\d)/, 'one stuck participant');
  t.match(await overview.textContent(), /Unresolved heuristics\s*1(?!\d)/, 'one unresolved heuristic');

  // The list, newest first: the committed and the stuck one, each marked.
  const committedRow = page.locator(`tr[data-id="${s.committedId}"]`);
  const stuckRow = page.locator(`tr[data-id="${s.stuckId}"]`);
  await committedRow.waitFor();
  t.match(await committedRow.textContent(), /committed/);
  t.match(await stuckRow.textContent(), /committing/);
  t.match(await stuckRow.textContent(), /stuck/);
  const order = await page
    .locator('#list-body tbody tr')
    .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
  t.same(order, [s.undecidedId, s.stuckId, s.heuristicId, s.abortedId, s.committedId], 'newest first');

  // Each filter finds the one transaction it is for; Clear brings back all five.
  const filters: Array<[string, () => Promise<void>, string]> = [
    ['stuck=true', () => page.getByLabel('Stuck', { exact: true }).check(), s.stuckId],
    ['heuristic=unresolved', () => page.getByLabel('Heuristic unresolved').check(), s.heuristicId],
    ['participant=stock', () => page.getByLabel('Participant name').fill('stock'), s.abortedId],
  ];
  for (const [what, set, id] of filters) {
    await set();
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await rows(page, 1);
    t.equal(await page.locator('#list-body tbody tr').getAttribute('data-id'), id, what);
    await page.getByRole('button', { name: 'Clear' }).click();
    await rows(page, 5);
  }

  // The committed one: values from the server are text, not markup.
  await committedRow.getByRole('link').click();
  await page.locator('#tx-title').filter({ hasText: s.committedId }).waitFor();
  t.ok(await page.getByText(s.markup, { exact: false }).count(), 'the metadata shows the markup as text');
  t.equal(await page.locator('#tx-body img, #tx-body b').count(), 0, 'and no element was made from it');
  t.not(await page.title(), 'pwned');
  await page.getByRole('link', { name: 'All transactions' }).click();

  // The stuck one: participants, last error, history.
  await stuckRow.getByRole('link').click();
  await page.locator('#tx-title').filter({ hasText: s.stuckId }).waitFor();
  t.equal(
    await page.evaluate<string | undefined>('document.activeElement?.id'),
    'tx-title',
    'focus moves to the heading',
  );
  const ledger = page.locator('#tx-participants tr[data-participant="ledger"]');
  t.match(await ledger.textContent(), /no: stuck/, 'ledger: not acknowledged, stuck');
  t.match(await ledger.textContent(), /503/, 'its last error');
  t.match(await page.locator('#tx-participants tr[data-participant="orders"]').textContent(), /yes/);
  const history = page.locator('#tx-history');
  for (const type of ['begun', 'voted', 'decided', 'acknowledged', 'delivery-failed']) {
    t.ok(await history.locator(`li[data-type="${type}"]`).count(), `the history shows ${type}`);
  }
  t.match(await history.locator('li[data-type="decided"]').textContent(), /Decided commit/);
  t.equal(
    await page.getByRole('button', { name: 'Abort', exact: true }).isDisabled(),
    true,
    'a decided commit cannot be aborted',
  );

  // Retry now, behind a confirmation; Escape cancels it first.
  const dialog = page.getByRole('dialog');
  await page.getByRole('button', { name: 'Retry now', exact: true }).click();
  await dialog.waitFor();
  t.equal(
    await page.evaluate<string | undefined>('document.activeElement?.id'),
    'confirm-cancel',
    'focus is in the dialog',
  );
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  t.equal(await history.locator('li[data-type="operator-retry"]').count(), 0, 'Escape: nothing was done');
  await page.getByRole('button', { name: 'Retry now', exact: true }).click();
  await dialog.getByRole('button', { name: 'Retry now', exact: true }).click();
  await dialog.waitFor({ state: 'hidden' });
  await history.locator('li[data-type="operator-retry"]').waitFor();
  t.pass('the retry is in the history');
  t.ok(await page.locator('#error').isHidden(), 'no error shown');

  // The heuristic outcome: resolved with a note, which the dialog insists on.
  await page.getByRole('link', { name: 'All transactions' }).click();
  const heuristicRow = page.locator(`tr[data-id="${s.heuristicId}"]`);
  await heuristicRow.waitFor();
  t.match(await heuristicRow.textContent(), /heuristic unresolved/, 'marked in the list');
  await heuristicRow.getByRole('link').click();
  await page.locator('#tx-title').filter({ hasText: s.heuristicId }).waitFor();
  const warehouse = page.locator('#tx-participants tr[data-participant="warehouse"]');
  t.match(await warehouse.textContent(), /abort, unresolved/, 'the participant that rolled back on its own');
  await page.getByRole('button', { name: 'Resolve heuristic' }).click();
  await dialog.waitFor();
  t.equal(await page.evaluate<string | undefined>('document.activeElement?.id'), 'confirm-note', 'focus on the note');
  await dialog.getByRole('button', { name: 'Mark resolved' }).click();
  t.ok(await dialog.isVisible(), 'without a note the dialog stays open');
  const note = 'order 1043 restocked by hand (ticket OPS-7)';
  await dialog.getByLabel('Note (who looked, what was done)').fill(note);
  await dialog.getByLabel('Participant', { exact: true }).selectOption('warehouse');
  await dialog.getByRole('button', { name: 'Mark resolved' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await history.locator('li[data-type="heuristic-resolved"]').waitFor();
  t.match(await history.locator('li[data-type="heuristic-resolved"]').textContent(), note, 'the note in the history');
  t.match(await warehouse.textContent(), /abort, resolved/, 'the participant shows it resolved');
  t.match(await warehouse.textContent(), note);
  t.equal(await page.getByRole('button', { name: 'Resolve heuristic' }).isDisabled(), true, 'nothing left to resolve');
  await page.waitForFunction(() =>
    /Unresolved heuristics\s*0(?!\d)/.test(
      (globalThis as any).document.querySelector('#overview-body')?.textContent ?? '',
    ),
  );
  t.pass('the overview counts no unresolved heuristic');

  // Abort the undecided one, behind a confirmation.
  await page.getByRole('link', { name: 'All transactions' }).click();
  await page.locator(`tr[data-id="${s.undecidedId}"] a`).click();
  await page.locator('#tx-title').filter({ hasText: s.undecidedId }).waitFor();
  t.match((await page.locator('#tx-body').textContent()) ?? '', /preparing/);
  t.equal(
    await page.getByRole('button', { name: 'Retry now', exact: true }).isDisabled(),
    true,
    'nothing to retry yet',
  );
  await page.getByRole('button', { name: 'Abort', exact: true }).click();
  await dialog.getByRole('button', { name: 'Abort transaction' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.locator('#tx-body').getByText('operator', { exact: true }).waitFor();
  t.equal(
    await page.getByRole('button', { name: 'Abort', exact: true }).isDisabled(),
    true,
    'decided: no second abort',
  );
  // The abort is decided at once; `inventory` hears it once it has answered
  // the prepare it holds (an abort never overtakes a prepare).
  s.releasePrepares();
  let refreshes = 0;
  while ((await page.locator('#transaction').getAttribute('data-state')) !== 'aborted' && refreshes++ < REFRESHES_MAX) {
    await page.waitForTimeout(100);
    await page.getByRole('button', { name: 'Refresh' }).click();
  }
  t.equal(await page.locator('#transaction').getAttribute('data-state'), 'aborted', 'the undecided one is aborted');
  const summary = (await page.locator('#tx-body').textContent()) ?? '';
  t.match(summary, /Abort reason\s*operator/, 'by an operator');
  const after = await api(s.url, 'GET', `/v1/transactions/${s.undecidedId}`);
  t.equal(after.body.outcome, 'abort', 'commitd agrees');

  // Log out: the token is gone, the page asks again.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('Admin token').waitFor();
  t.equal(await page.evaluate<number>('sessionStorage.length'), 0, 'the token is forgotten');
  t.notOk(await page.locator('#transaction').isVisible(), 'no data is left on screen');
}
