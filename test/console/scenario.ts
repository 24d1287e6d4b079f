// What the console's browser test and `npm run screenshots` look at: a real
// commitd process with tokens, real participant servers (one that
// acknowledges, one whose phase two always fails so its transaction gets
// stuck, one that holds its answer to prepare until the test lets it go so
// its transaction stays undecided, one that rolls back on its own when told
// to commit: a heuristic outcome), a handful of transactions in the states an operator meets,
// and Debian's chromium driven by playwright-core.
//
// Part of the build (tsconfig.build.json): the screenshots script runs from dist/.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, chromium, type Page } from 'playwright-core';
import { startParticipant } from '../support/participant.js';
import { type Service, startService } from '../support/service.js';

export const ADMIN_TOKEN = 'console-admin-token-0123456789abcdef';
export const CLIENT_TOKEN = 'console-client-token-0123456789abcdef';
/** Delivery attempts after which a participant counts as stuck, low so the test gets there in a second. */
export const STUCK_AFTER_ATTEMPTS = 3;
export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--no-first-run',
];

const CALL_TIMEOUT_MS = 30_000;
const WAIT_TIMEOUT_MS = 30_000;
const WAIT_POLL_MS = 50;

export interface Scenario {
  readonly service: Service;
  readonly url: string;
  /** Committed everywhere; its metadata holds markup that must show as text. */
  readonly committedId: string;
  /** Aborted: a participant voted no. */
  readonly abortedId: string;
  /** Committed, but `warehouse` had rolled back on its own: an unresolved heuristic. */
  readonly heuristicId: string;
  /** Commit decided; `ledger` fails every delivery and is past the stuck threshold. */
  readonly stuckId: string;
  /** Preparing: `inventory` holds its answer to prepare, and the deadline is far away. */
  readonly undecidedId: string;
  /**
   * Lets `inventory` answer the prepares it holds (yes). commitd sends an
   * abort only once the prepare is answered (an abort never overtakes a
   * prepare): an aborted undecided transaction finishes after this.
   */
  releasePrepares(): void;
  /** The text the committed transaction's metadata holds. */
  readonly markup: string;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  body: any;
}

/** A call to commitd, as an admin unless another token is given. */
export async function api(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  token: string = ADMIN_TOKEN,
): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? null : JSON.stringify(body),
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : JSON.parse(text) };
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_TIMEOUT_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
  }
}

function expectStatus(answer: Answer, status: number, what: string): void {
  if (answer.status !== status)
    throw new Error(`${what}: expected ${status}, got ${answer.status} ${JSON.stringify(answer.body)}`);
}

export async function startScenario(dataDir: string): Promise<Scenario> {
  const participants: Array<{ close(): Promise<void> }> = [];
  const service = await (async () => {
    // Votes no when the payload asks it to, acknowledges everything else.
    const shop = await startParticipant((m) =>
      m.action === 'prepare' && (m.body.payload as { refuse?: boolean } | null)?.refuse === true
        ? { status: 200, body: { vote: 'no', reason: 'out of stock' } }
        : undefined,
    );
    participants.push(shop);
    const ledger = await startParticipant((m) =>
      m.action === 'prepare' ? undefined : { status: 503, body: { error: 'ledger database is read-only' } },
    );
    participants.push(ledger);
    const inventory = await startHoldingParticipant();
    participants.push(inventory);
    const warehouse = await startParticipant((m) =>
      m.action === 'commit' ? { status: 409, body: { heuristic: 'abort' } } : undefined,
    );
    participants.push(warehouse);
    const started = await startService(dataDir, {
      COMMITD_TOKENS: `client:${CLIENT_TOKEN},admin:${ADMIN_TOKEN}`,
      COMMITD_STUCK_AFTER_ATTEMPTS: String(STUCK_AFTER_ATTEMPTS),
      // Undecided stays undecided: prepare waits as long as the test runs.
      COMMITD_PREPARE_TIMEOUT_MS: '600000',
      COMMITD_RETRY_DELAY_MS_MAX: '1000',
    });
    return { started, shop, ledger, inventory, warehouse };
  })().catch(async (error) => {
    await Promise.all(participants.map((p) => p.close()));
    throw error;
  });
  const { started, shop, ledger, inventory, warehouse } = service;
  const url = started.url;
  // The transactions are begun and committed by a client, as an application would.
  const client = (method: string, path: string, body?: unknown) => api(url, method, path, body, CLIENT_TOKEN);
  const close = async () => {
    await started.kill('SIGKILL');
    await Promise.all(participants.map((p) => p.close()));
  };
  try {
    // No double quote in it: the page shows metadata as JSON, which would escape one.
    const markup = "<img src=x onerror=document.title='pwned'><b>bold?</b>";
    const committed = await client('POST', '/v1/transactions', {
      participants: [
        { name: 'orders', url: shop.url, payload: { order: 1041 } },
        { name: 'payments', url: shop.url, payload: { amount: 42 } },
      ],
      metadata: { note: markup },
      commit: true,
    });
    expectStatus(committed, 200, 'the committed transaction');
    const aborted = await client('POST', '/v1/transactions', {
      participants: [
        { name: 'orders', url: shop.url, payload: { order: 1042 } },
        { name: 'stock', url: shop.url, payload: { refuse: true } },
      ],
      commit: true,
    });
    expectStatus(aborted, 409, 'the aborted transaction');
    const heuristic = await client('POST', '/v1/transactions', {
      participants: [
        { name: 'orders', url: shop.url, payload: { order: 1043 } },
        { name: 'warehouse', url: warehouse.url },
      ],
      commit: true,
    });
    expectStatus(heuristic, 200, 'the transaction with a heuristic outcome');
    const stuck = await client('POST', '/v1/transactions', {
      participants: [
        { name: 'orders', url: shop.url, payload: { order: 1044 } },
        { name: 'ledger', url: ledger.url },
      ],
      commit: true,
    });
    expectStatus(stuck, 202, 'the stuck transaction');
    const stuckId: string = stuck.body.id;
    await until('the ledger participant to be stuck', async () => {
      const tx = await client('GET', `/v1/transactions/${stuckId}`);
      const p = tx.body.participants.find((x: { name: string }) => x.name === 'ledger');
      return (p?.attempts ?? 0) >= STUCK_AFTER_ATTEMPTS;
    });
    const undecided = await client('POST', '/v1/transactions', {
      participants: [{ name: 'inventory', url: inventory.url }],
      timeoutMs: 600_000,
    });
    expectStatus(undecided, 201, 'the undecided transaction');
    const undecidedId: string = undecided.body.id;
    // Asks for the commit and does not wait: prepare hangs at `inventory`.
    // The call ends on its own (503, outcome pending) or when the transaction is aborted.
    void client('POST', `/v1/transactions/${undecidedId}/commit`).catch(() => {});
    await until('the undecided transaction to be preparing', async () => {
      const tx = await client('GET', `/v1/transactions/${undecidedId}`);
      return tx.body.state === 'preparing';
    });
    return {
      service: started,
      url,
      committedId: committed.body.id,
      abortedId: aborted.body.transaction.id,
      heuristicId: heuristic.body.id,
      stuckId,
      undecidedId,
      markup,
      releasePrepares: () => inventory.release(),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** How long a held prepare waits at most, so a test that forgets to release it still ends. */
const HOLD_MAX_MS = 120_000;

interface HoldingParticipant {
  readonly url: string;
  release(): void;
  close(): Promise<void>;
}

/** A participant that answers prepare (yes) only once released, and acknowledges commit and abort at once. */
async function startHoldingParticipant(): Promise<HoldingParticipant> {
  const held = new Set<() => void>();
  let released = false;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const answer = (body: unknown) => {
        if (res.writableEnded || res.destroyed) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.url?.endsWith('/prepare') !== true) return answer({});
      if (released) return answer({ vote: 'yes' });
      const go = () => {
        held.delete(go);
        clearTimeout(timer);
        answer({ vote: 'yes' });
      };
      const timer = setTimeout(go, HOLD_MAX_MS);
      held.add(go);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/tx`,
    release: () => {
      released = true;
      for (const go of [...held]) go();
    },
    close: async () => {
      released = true;
      for (const go of [...held]) go();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** Opens the console and signs in with `token`; resolves once the page let the operator in or said why not. */
export async function signIn(page: Page, base: string, token: string): Promise<void> {
  await page.goto(`${base}/console`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#logout:visible, #error:visible').first().waitFor();
}
