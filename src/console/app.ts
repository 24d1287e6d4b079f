// The operator console's entry point: sign-in, hash routing (#/ for the
// overview and the list, #/tx/ID for one transaction), the live overview,
// and the operator actions, each behind a confirmation.

import { ApiError, call, forgetToken, savedToken, saveToken, segment } from './api.js';
import { confirmAction } from './confirm.js';
import { byId } from './dom.js';
import { type Filters, hasUnresolvedHeuristic, loadPage, readFilters, renderList } from './list.js';
import { loadStats, renderOverview } from './overview.js';
import { loadTransaction, renderTransaction } from './transaction.js';
import type { TransactionView } from './types.js';

/** How often the overview is refreshed while the page is shown. */
const OVERVIEW_REFRESH_MS = 2000;

const sections = {
  login: byId('login'),
  overview: byId('overview'),
  list: byId('list'),
  transaction: byId('transaction'),
};

const state = {
  filters: null as Filters | null,
  /** The cursors of the pages shown so far: the current page starts after the last one. */
  cursors: [] as Array<string | null>,
  next: null as string | null,
  stuckAfterAttempts: null as number | null,
  tx: null as TransactionView | null,
  overviewTimer: null as ReturnType<typeof setInterval> | null,
  overviewInFlight: false,
};

function showError(message: string | null): void {
  const box = byId('error');
  box.textContent = message ?? '';
  box.hidden = message === null;
  // An action's refusal comes while the operator looks at the buttons, further down.
  if (message !== null) box.scrollIntoView({ block: 'nearest' });
}

/** Shows a failed call; a refused token sends the operator back to sign in. */
function failed(error: unknown): void {
  if (error instanceof ApiError) {
    showError(error.detail);
    if (error.status === 401 || error.status === 403) {
      forgetToken();
      route();
    }
    return;
  }
  showError(String((error as Error)?.message ?? error));
}

function show(...visible: HTMLElement[]): void {
  for (const section of Object.values(sections)) section.hidden = !visible.includes(section);
  byId('logout').hidden = savedToken() === null;
}

async function refreshOverview(): Promise<void> {
  if (savedToken() === null || state.overviewInFlight) return;
  state.overviewInFlight = true;
  try {
    const stats = await loadStats();
    state.stuckAfterAttempts = stats.stuckAfterAttempts;
    renderOverview(byId('overview-body'), stats);
  } catch (error) {
    failed(error);
  } finally {
    state.overviewInFlight = false;
  }
}

function startOverview(): void {
  if (state.overviewTimer !== null) return;
  void refreshOverview();
  state.overviewTimer = setInterval(() => void refreshOverview(), OVERVIEW_REFRESH_MS);
}

function stopOverview(): void {
  if (state.overviewTimer !== null) clearInterval(state.overviewTimer);
  state.overviewTimer = null;
}

async function showList(): Promise<void> {
  state.filters ??= readFilters(byId<HTMLFormElement>('filters'));
  const after = state.cursors.at(-1) ?? null;
  try {
    const page = await loadPage(state.filters, after);
    state.next = page.next;
    renderList(byId('list-body'), page, state.stuckAfterAttempts);
    byId('next-page').hidden = page.next === null;
    byId('first-page').hidden = after === null;
    showError(null);
  } catch (error) {
    failed(error);
  }
}

async function showTransaction(id: string, focus: boolean): Promise<void> {
  try {
    const { tx, history } = await loadTransaction(id);
    state.tx = tx;
    sections.transaction.dataset.state = tx.state;
    byId('tx-title').textContent = `Transaction ${tx.id}`;
    renderTransaction(
      { summary: byId('tx-body'), participants: byId('tx-participants'), history: byId('tx-history') },
      tx,
      history,
      state.stuckAfterAttempts,
    );
    const undecided = tx.outcome === null;
    byId<HTMLButtonElement>('action-retry').disabled = undecided || tx.participants.every((p) => p.acknowledged);
    byId<HTMLButtonElement>('action-abort').disabled = !undecided;
    byId<HTMLButtonElement>('action-resolve').disabled = !hasUnresolvedHeuristic(tx);
    showError(null);
    if (focus) byId('tx-title').focus();
  } catch (error) {
    failed(error);
  }
}

function route(): void {
  if (savedToken() === null) {
    stopOverview();
    show(sections.login);
    byId('token').focus();
    return;
  }
  startOverview();
  const match = /^#\/tx\/(.+)$/.exec(location.hash);
  if (match?.[1] !== undefined) {
    show(sections.overview, sections.transaction);
    void showTransaction(decodeURIComponent(match[1]), true);
  } else {
    show(sections.overview, sections.list);
    void showList();
  }
}

/** Runs an operator action on the transaction shown, once confirmed, and shows the result. */
async function act(
  action: 'retry' | 'abort' | 'resolve',
  confirmation: Parameters<typeof confirmAction>[0],
): Promise<void> {
  const tx = state.tx;
  if (tx === null) return;
  const confirmed = await confirmAction(confirmation);
  if (confirmed === null) return;
  const body =
    action === 'resolve'
      ? { note: confirmed.note, ...(confirmed.participant === '' ? {} : { participant: confirmed.participant }) }
      : undefined;
  try {
    await call('POST', `/v1/transactions/${segment(tx.id)}/${action}`, body);
  } catch (error) {
    failed(error);
    return;
  }
  await showTransaction(tx.id, false);
  void refreshOverview();
}

function wire(): void {
  byId<HTMLFormElement>('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = byId<HTMLInputElement>('token');
    const token = input.value.trim();
    if (token === '') return;
    saveToken(token);
    // Checked before the page shows anything: a wrong token is said at once.
    try {
      await call('GET', '/v1/stats');
    } catch (error) {
      forgetToken();
      showError(error instanceof ApiError ? error.detail : String(error));
      input.focus();
      return;
    }
    input.value = '';
    showError(null);
    route();
  });
  byId('logout').addEventListener('click', () => {
    forgetToken();
    state.tx = null;
    // Nothing read with the token stays in the page.
    for (const id of ['overview-body', 'list-body', 'tx-body', 'tx-participants', 'tx-history'])
      byId(id).replaceChildren();
    showError(null);
    location.hash = '#/';
    route();
  });
  byId<HTMLFormElement>('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    state.filters = readFilters(event.currentTarget as HTMLFormElement);
    state.cursors = [];
    void showList();
  });
  byId<HTMLFormElement>('filters').addEventListener('reset', () => {
    // After the browser has cleared the fields.
    setTimeout(() => {
      state.filters = readFilters(byId<HTMLFormElement>('filters'));
      state.cursors = [];
      void showList();
    });
  });
  byId('next-page').addEventListener('click', () => {
    if (state.next === null) return;
    state.cursors.push(state.next);
    void showList();
  });
  byId('first-page').addEventListener('click', () => {
    state.cursors = [];
    void showList();
  });
  byId('action-refresh').addEventListener('click', () => {
    if (state.tx !== null) void showTransaction(state.tx.id, false);
  });
  byId('action-retry').addEventListener('click', () =>
    act('retry', {
      title: 'Retry now?',
      text: 'Phase two is sent again at once to every participant that has not acknowledged, and the backoff starts over.',
      confirmLabel: 'Retry now',
    }),
  );
  byId('action-abort').addEventListener('click', () =>
    act('abort', {
      title: 'Abort this transaction?',
      text: 'The transaction is aborted and every prepared participant is told to roll back. This cannot be undone.',
      confirmLabel: 'Abort transaction',
    }),
  );
  byId('action-resolve').addEventListener('click', () =>
    act('resolve', {
      title: 'Resolve the heuristic?',
      text: 'Say what was checked or repaired. The heuristic then stops counting as unresolved; the note is kept in the history.',
      confirmLabel: 'Mark resolved',
      note: {
        participants: (state.tx?.participants ?? [])
          .filter((p) => p.heuristic !== undefined && p.heuristicResolved === undefined)
          .map((p) => p.name),
      },
    }),
  );
  window.addEventListener('hashchange', route);
}

wire();
route();
