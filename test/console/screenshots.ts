// `npm run screenshots`: the console's main views as PNGs in docs/ (shown in
// docs/console.md), taken from the browser test's scenario: a real commitd with a
// committed, an aborted, a stuck and an undecided transaction.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/config.js';
import { ADMIN_TOKEN, launchBrowser, signIn, startScenario } from './scenario.js';

const DOCS = path.join(PACKAGE_ROOT, 'docs');
const WAIT_MS = 15_000;

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-screenshots-'));
  const scenario = await startScenario(dataDir);
  const browser = await launchBrowser();
  try {
    const wide = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await wide.newPage();
    page.setDefaultTimeout(WAIT_MS);
    await signIn(page, scenario.url, ADMIN_TOKEN);
    await page.locator(`tr[data-id="${scenario.stuckId}"]`).waitFor();
    await page.locator('#overview-body dl').waitFor();
    await shoot(page, 'console-overview.png');

    // The stuck one as an operator first sees it (a retry would start its count of attempts over).
    await page.locator(`tr[data-id="${scenario.stuckId}"] a`).click();
    await page.locator('#tx-history li').first().waitFor();
    await shoot(page, 'console-stuck.png');
    await wide.close();

    const narrow = await browser.newContext({ viewport: { width: 375, height: 812 }, isMobile: true });
    const phone = await narrow.newPage();
    phone.setDefaultTimeout(WAIT_MS);
    await signIn(phone, scenario.url, ADMIN_TOKEN);
    await phone.locator(`tr[data-id="${scenario.stuckId}"]`).waitFor();
    await shoot(phone, 'console-narrow.png');
    await narrow.close();
  } finally {
    await browser.close();
    await scenario.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function shoot(page: import('playwright-core').Page, name: string): Promise<void> {
  const file = path.join(DOCS, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`wrote ${path.relative(PACKAGE_ROOT, file)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
