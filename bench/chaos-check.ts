// The checker of a chaos run (npm run chaos, npm run chaos:cluster): what the
// participants durably did (replayed from their own files), what clients were
// told and what the coordinator reports must agree. Each disagreement is a
// violation.

import fs from 'node:fs';
import type { ClientRecord } from './chaos-load.js';
import { notes, runtimeViolations, type Violation } from './chaos-processes.js';
import type { Settled, View } from './chaos-settle.js';
import type { FileEntry, ParticipantState } from './durable-participant.js';

const VIOLATIONS_PRINTED = 100;

export interface TxAtParticipant {
  state: ParticipantState;
  key: string | null;
  /** What happened, in order, for the violation report: `prepare>prepared commit>committed`. */
  history: string;
}

export interface Replay {
  readonly name: string;
  readonly txs: Map<string, TxAtParticipant>;
  readonly anomalies: Violation[];
  /** Aborts of ids it had never heard of (answered 404, remembered). */
  readonly unknownAborts: number;
}

/** Rebuilds a participant's per-transaction state from its file, checking every step is one it may take. */
export function replay(name: string, file: string): Replay {
  const txs = new Map<string, TxAtParticipant>();
  const anomalies: Violation[] = [];
  const refusals = new Map<string, number>();
  let unknownAborts = 0;
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const lines = text.split('\n');
  // The last element is what follows the last newline: empty, or a torn write never answered for.
  lines.pop();
  for (const line of lines) {
    if (line === '') continue;
    let e: FileEntry;
    try {
      e = JSON.parse(line) as FileEntry;
    } catch {
      anomalies.push({ kind: 'participant-file-corrupt', tx: null, detail: `${name}: unreadable line ${line}` });
      continue;
    }
    const known = txs.get(e.tx);
    if (e.anomaly !== undefined) {
      // The coordinator retries a refused message without end: one violation per kind of request.
      const id = `${e.tx} ${e.op} ${e.anomaly}`;
      refusals.set(id, (refusals.get(id) ?? 0) + 1);
      if (refusals.get(id) === 1) {
        anomalies.push({ kind: 'participant-refused-request', tx: e.tx, detail: `${name}: ${e.anomaly}` });
      }
      if (known && !known.history.endsWith(` ${e.op}!`)) known.history += ` ${e.op}!`;
      continue;
    }
    const from = known?.state;
    const to = e.to;
    const allowed =
      (from === undefined && e.op === 'prepare' && (to === 'prepared' || to === 'refused')) ||
      (from === undefined && e.op === 'abort' && to === 'aborted') ||
      (from === 'prepared' && e.op === 'commit' && to === 'committed') ||
      (from === 'prepared' && e.op === 'abort' && to === 'aborted');
    if (!allowed || to === undefined) {
      anomalies.push({
        kind: 'participant-bad-transition',
        tx: e.tx,
        detail: `${name}: ${e.op} took ${from ?? 'unknown'} to ${to}`,
      });
      continue;
    }
    if (e.unknown) unknownAborts++;
    const step = `${e.op}>${to}${e.unknown ? '(unknown id)' : ''}`;
    if (known) {
      known.state = to;
      known.history += ` ${step}`;
    } else {
      txs.set(e.tx, { state: to, key: e.key ?? null, history: step });
    }
  }
  return { name, txs, anomalies, unknownAborts };
}

export interface CheckInput {
  readonly participants: readonly Replay[];
  readonly records: readonly ClientRecord[];
  readonly settled: Settled;
  readonly outcomes: ReadonlyMap<string, string>;
  /**
   * Each coordinator's own answer to GET /v1/transactions/{id}, when there
   * are several: a View, or what came instead (`HTTP 404`, `no answer`).
   */
  readonly instanceViews?: readonly InstanceViews[];
}

export interface InstanceViews {
  readonly label: string;
  readonly views: ReadonlyMap<string, View | string>;
}

export interface CheckResult {
  readonly violations: Violation[];
  readonly transactions: number;
  readonly committed: number;
  readonly aborted: number;
}

export function check(input: CheckInput): CheckResult {
  const { participants, records, settled, outcomes } = input;
  const violations: Violation[] = participants.flatMap((p) => p.anomalies);
  const ids = new Set<string>();
  for (const p of participants) for (const id of p.txs.keys()) ids.add(id);
  for (const id of settled.views.keys()) ids.add(id);
  for (const id of settled.missing) ids.add(id);
  for (const r of records) if (r.txId !== null) ids.add(r.txId);

  const describe = (id: string): string => {
    const at = participants.map((p) => `${p.name}: ${p.txs.get(id)?.history ?? 'never heard of it'}`).join('; ');
    const v = settled.views.get(id);
    const coordinator = settled.missing.has(id) ? '404' : v ? `${v.state}/${v.outcome}` : 'not asked';
    return `${at}; coordinator: ${coordinator}, outcome inquiry: ${outcomes.get(id) ?? 'not asked'}`;
  };
  const add = (kind: string, id: string, what: string) =>
    violations.push({ kind, tx: id, detail: `${what} (${describe(id)})` });

  let committed = 0;
  let aborted = 0;
  const everywhere = (id: string) => participants.every((p) => p.txs.get(id)?.state === 'committed');
  const anywhere = (id: string) => participants.some((p) => p.txs.get(id)?.state === 'committed');
  for (const id of ids) {
    const states = participants.map((p) => p.txs.get(id)?.state);
    const all = everywhere(id);
    const some = anywhere(id);
    if (some && !all) {
      const rolledBack = states.some((s) => s === 'aborted' || s === 'refused');
      add(rolledBack ? 'split-outcome' : 'partial-commit', id, 'committed at some participants, not at all');
    }
    if (states.includes('prepared')) add('left-prepared', id, 'a participant is still prepared');
    const outcome = outcomes.get(id);
    if (outcome === 'commit') {
      committed++;
      if (!all) add('outcome-disagrees', id, 'the coordinator reports commit, not every participant committed');
    } else if (outcome === 'abort') {
      aborted++;
      if (some) add('outcome-disagrees', id, 'the coordinator reports abort, a participant committed');
    } else {
      add('outcome-undecided', id, `the outcome inquiry answers ${outcome ?? 'nothing'} after settling`);
    }
    const view = settled.views.get(id);
    if (settled.missing.has(id)) add('record-lost', id, 'the coordinator has no record of a transaction it ran');
    else if (settled.unsettled.has(id)) add('unsettled', id, 'not committed or aborted when the settle time ran out');
    else if (view && outcome !== undefined && view.outcome !== outcome) {
      add('outcome-disagrees', id, `GET says outcome ${view.outcome}, the outcome inquiry ${outcome}`);
    }
    if (view?.heuristics) add('heuristic', id, `heuristic outcomes reported: ${view.heuristics}`);
    for (const instance of input.instanceViews ?? []) {
      const seen = instance.views.get(id);
      const what = `${instance.label}'s GET answers`;
      if (seen === undefined) continue;
      if (typeof seen === 'string') add('instance-view-missing', id, `${what} ${seen}`);
      else if (seen.state === 'committed' && !all) add('instance-view-disagrees', id, `${what} committed`);
      else if (seen.state === 'aborted' && some) add('instance-view-disagrees', id, `${what} aborted`);
      else if (seen.state !== 'committed' && seen.state !== 'aborted') {
        add('instance-view-unsettled', id, `${what} ${seen.state}/${seen.outcome}`);
      }
    }
  }

  const idsOfKey = new Map<string, Set<string>>();
  for (const p of participants) {
    for (const [id, t] of p.txs) {
      if (t.key === null) continue;
      const set = idsOfKey.get(t.key) ?? new Set<string>();
      set.add(id);
      idsOfKey.set(t.key, set);
    }
  }
  for (const [key, set] of idsOfKey) {
    if (set.size > 1) {
      for (const id of set) add('key-reused', id, `idempotency key ${key} ran as ${set.size} transactions`);
    }
  }
  const keyOfId = new Map<string, string>();
  for (const r of records) {
    if (r.told === null || r.txId === null) {
      violations.push({
        kind: 'client-gave-up',
        tx: null,
        detail: `key ${r.key} (${r.flow}): no answer in ${r.attempts} attempts`,
      });
      continue;
    }
    const id = r.txId;
    if (r.idsSeen.length > 1) {
      add('key-answered-differently', id, `key ${r.key}: answers named ${r.idsSeen.join(', ')}`);
    }
    const other = keyOfId.get(id);
    if (other !== undefined) add('id-shared', id, `keys ${other} and ${r.key} were answered with the same transaction`);
    keyOfId.set(id, r.key);
    const seen = idsOfKey.get(r.key);
    if (seen && !seen.has(id))
      add('key-id-mismatch', id, `key ${r.key} answered with ${id}, participants ran ${[...seen]}`);
    const told = `client was told ${r.answer} (${r.told}, ${r.flow})`;
    if (r.told === 'commit' && !everywhere(id)) {
      add('acknowledged-commit-lost', id, `${told}, not committed at every participant`);
    }
    if (r.told === 'commit' && outcomes.get(id) !== 'commit') {
      add('acknowledged-commit-lost', id, `${told}, the coordinator's outcome disagrees`);
    }
    if (r.told === 'abort' && anywhere(id)) add('reported-abort-committed', id, told);
    if (r.told === 'abort' && outcomes.get(id) === 'commit') {
      add('reported-abort-committed', id, `${told}, the coordinator's outcome is commit`);
    }
  }
  return { violations, transactions: ids.size, committed, aborted };
}

/** Prints the violations (the first VIOLATIONS_PRINTED of them) and a count by kind. */
export function printViolations(violations: readonly Violation[]): void {
  const byKind = new Map<string, number>();
  for (const v of violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1);
  for (const v of violations.slice(0, VIOLATIONS_PRINTED)) {
    console.log(`violation ${v.kind}${v.tx ? ` ${v.tx}` : ''}: ${v.detail}`);
  }
  if (violations.length > VIOLATIONS_PRINTED) {
    console.log(`… and ${violations.length - VIOLATIONS_PRINTED} more`);
  }
  if (byKind.size > 0) console.log(`violations by kind: ${[...byKind].map(([k, n]) => `${k}=${n}`).join(' ')}`);
}

/**
 * Every transaction id the participants' files or the clients' answers name,
 * and those a participant refused a request for (already violations: not
 * waited for).
 */
export function idsSeen(files: readonly string[], records: readonly ClientRecord[]) {
  const seen = new Set<string>();
  const refused = new Set<string>();
  for (const [i, f] of files.entries()) {
    const r = replay(`p${i}`, f);
    for (const id of r.txs.keys()) seen.add(id);
    for (const a of r.anomalies) if (a.tx) refused.add(a.tx);
  }
  for (const r of records) if (r.txId) seen.add(r.txId);
  return { seen, refused };
}

export interface Judgement extends CheckResult {
  readonly replays: readonly Replay[];
}

/**
 * The verdict, once the participants are stopped (their files complete):
 * the checker's violations after those recorded while the run went on, and
 * ids a participant heard of only after everything settled. Prints the
 * violations and the notes.
 */
export function judge(files: readonly string[], input: Omit<CheckInput, 'participants'>): Judgement {
  const replays = files.map((f, i) => replay(`p${i}`, f));
  const late = replays.flatMap((r) => [...r.txs.keys()]).filter((id) => !input.outcomes.has(id));
  const result = check({ ...input, participants: replays });
  const violations = [...runtimeViolations, ...result.violations];
  for (const id of new Set(late)) {
    violations.push({ kind: 'seen-late', tx: id, detail: 'a participant heard of it after everything settled' });
  }
  printViolations(violations);
  for (const note of new Set(notes)) console.error(`note: ${note}`);
  return { ...result, violations, replays };
}
