// One round of bench:takeover: the owner (the instance that receives the
// begins) is made to leave transactions in doubt at the participants, then
// it is failed (SIGKILL, or SIGSTOP), and the round measures how long until
// every one of them is resolved at every participant, with the right outcome,
// by the instance that takes its shards over. Then the failed instance is
// brought back (started again, or SIGCONT) and the round waits until the
// cluster has settled again, and checks nothing contrary arrived meanwhile.

import { type Instance, untilBalanced } from './cluster.js';
import type { InDoubtParticipant, Outcome } from './in-doubt-participant.js';
import { scrape } from './processes.js';

export type FailureKind = 'kill' | 'pause';

export interface RoundSettings {
  readonly decided: number;
  readonly undecided: number;
  /** A round whose transactions are not all resolved within this is a failure. */
  readonly deadlineMs: number;
  /** How long the in-doubt state may take to set up, and the cluster to settle after the round. */
  readonly setupTimeoutMs: number;
  readonly settleTimeoutMs: number;
}

export interface RoundResult {
  readonly round: number;
  readonly kind: FailureKind;
  readonly victim: string;
  readonly transactions: number;
  /** From the failure until every transaction was resolved at every participant; null if not reached. */
  readonly resolvedMs: number | null;
  readonly decidedMs: number | null;
  readonly undecidedMs: number | null;
  /** From the failure until the first outcome message reached a participant (the takeover's first sign). */
  readonly firstMessageMs: number | null;
  /** How long the failed instance took to be back with shards (restart or SIGCONT, then the cluster settled). */
  readonly rejoinMs: number | null;
  /** Pause rounds: held prepares (answered yes) and deliveries answered just before SIGCONT. */
  readonly lateAnswers: number;
  /** Pause rounds: how the woken owner answered the one-shot commits sent to it as it woke (HTTP statuses). */
  readonly freshAnswers: string | null;
  /** Begins of the in-doubt set answered 503 (ownership moving) before the failure and sent again. */
  readonly beginsRetried: number;
  /** Of those, the begins not answered at all (FRESH_ANSWER_TIMEOUT_MS), with what the participants and the store say of them. */
  readonly freshUnanswered: readonly string[];
  /**
   * Shards taken (by why), handed over or lost from just before the failure
   * until the cluster settled, per instance (commitd_cluster_shard_changes_total).
   * After a pause, `<victim> owner-gone` is the woken instance taking shards
   * from a healthy peer.
   */
  readonly shardMoves: Record<string, number>;
  /** What went wrong: empty for a good round. */
  readonly problems: readonly string[];
}

interface Doubt {
  /** The payload tag of its begin: a new one for each attempt. */
  tag: string;
  readonly kind: 'decided' | 'undecided';
  id: string | null;
}

/** Fresh one-shot commits sent to a paused owner the moment it is woken. */
const FRESH_BEGINS = 4;
/** A fresh begin not answered within this is listed (not a failure: its outcome is checked like the others'). */
export const FRESH_ANSWER_TIMEOUT_MS = 10_000;

const POLL_MS = 5;
const AFTER_REJOIN_MS = 500;
/** A begin answered 503 (ownership moving) before the failure is sent again, up to this many times in all. */
const BEGIN_ATTEMPTS = 5;
const expected = (kind: 'decided' | 'undecided'): Outcome => (kind === 'decided' ? 'commit' : 'abort');
const contrary = (o: Outcome): Outcome => (o === 'commit' ? 'abort' : 'commit');

export async function takeoverRound(options: {
  round: number;
  kind: FailureKind;
  victim: Instance;
  instances: readonly Instance[];
  steady: InDoubtParticipant;
  holder: InDoubtParticipant;
  settings: RoundSettings;
}): Promise<RoundResult> {
  const { round, kind, victim, instances, steady, holder, settings } = options;
  const survivors = instances.filter((i) => i !== victim);
  const problems: string[] = [];
  const participants = [steady, holder];
  for (const p of participants) p.failedAt = null;

  // The in-doubt state: one-shot commits begun at the victim, so it owns them.
  const doubts: Doubt[] = [
    ...Array.from({ length: settings.decided }, (_, i) => ({
      tag: `${round}-${kind}-d${i}`,
      kind: 'decided' as const,
      id: null,
    })),
    ...Array.from({ length: settings.undecided }, (_, i) => ({
      tag: `${round}-${kind}-u${i}`,
      kind: 'undecided' as const,
      id: null,
    })),
  ];
  const begins = new AbortController();
  const early: string[] = [];
  let retried = 0;
  const begin = (d: Doubt, attempt: number): void => {
    d.tag = `${d.tag.split('#')[0]}#${attempt}`;
    d.id = null;
    fetch(`${victim.url}/v1/transactions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        participants: participants.map((p) => ({ name: p.name, url: p.url, payload: { kind: d.kind, tag: d.tag } })),
        commit: true,
      }),
      signal: begins.signal,
    })
      .then(async (res) => {
        const text = await res.text();
        if (participants[0]?.failedAt !== null) return;
        // Ownership moving under the begin (the contract's 503): begun again,
        // at the victim still, a few times; its first attempt is the store's
        // to finish, whoever owns it now.
        if (res.status === 503 && attempt < BEGIN_ATTEMPTS) {
          retried++;
          setTimeout(() => begin(d, attempt + 1), 100);
          return;
        }
        // Any other answer before the failure: the begin did not stay in doubt as intended.
        early.push(`${d.tag}: ${res.status} ${text.slice(0, 200)}`);
      })
      .catch(() => {
        // the victim failed under it, or the round ended: expected
      });
  };
  for (const d of doubts) begin(d, 1);
  const ready = () => {
    for (const d of doubts) {
      d.id ??= steady.taggedIds.get(d.tag) ?? null;
      if (d.id === null || early.length > 0) return false;
      if (!holder.prepared.has(d.id)) return false;
      if (d.kind === 'decided' && !holder.deliveries.get(d.id)?.some((x) => x.outcome === 'commit')) return false;
    }
    return true;
  };
  const setupDeadline = performance.now() + settings.setupTimeoutMs;
  while (!ready() && performance.now() < setupDeadline && early.length === 0) await sleep(POLL_MS);
  if (!ready()) {
    begins.abort();
    problems.push(
      `setup: the in-doubt state was not reached within ${settings.setupTimeoutMs} ms (${doubts.filter((d) => d.id !== null).length}/${doubts.length} begun; early answers: ${early.join('; ') || 'none'})`,
    );
    return { ...empty(round, kind, victim, doubts.length), beginsRetried: retried, problems };
  }
  const ids = doubts.map((d) => d.id as string);
  // While the owner lives, another instance must not presume an abort of what
  // the owner may still commit: a reader answers from the store (contract).
  for (const instance of survivors) {
    for (const d of doubts) {
      const said = await inquiry(instance.url, d.id as string);
      const right = d.kind === 'decided' ? 'commit' : 'pending';
      if (said !== right) {
        problems.push(
          `inquiry before the failure: ${instance.name} says ${said} for ${d.id} (${d.kind}, owner ${victim.name} alive: expected ${right})`,
        );
      }
    }
  }

  const changesBefore = await shardChanges(instances);
  // The failure. The participants answer from this instant: whatever reaches
  // them now comes from the instance that took the shards over.
  const failedAt = performance.now();
  for (const p of participants) p.failedAt = failedAt;
  victim.process.child.kill(kind === 'kill' ? 'SIGKILL' : 'SIGSTOP');

  const resolvedAt = (d: Doubt, p: InDoubtParticipant) => p.resolvedAt(d.id as string, expected(d.kind));
  const allResolved = () => doubts.every((d) => participants.every((p) => resolvedAt(d, p) !== null));
  const deadline = failedAt + settings.deadlineMs;
  while (!allResolved() && performance.now() < deadline) await sleep(POLL_MS);
  const since = (at: number | null) => (at === null ? null : Math.max(0, at - failedAt));
  const latest = (which: Doubt['kind'] | null) => {
    let worst = 0;
    for (const d of doubts) {
      if (which !== null && d.kind !== which) continue;
      for (const p of participants) {
        const at = resolvedAt(d, p);
        if (at === null) return null;
        worst = Math.max(worst, at - failedAt);
      }
    }
    return worst;
  };
  const resolvedMs = latest(null);
  const decidedMs = latest('decided');
  const undecidedMs = latest('undecided');
  let first: number | null = null;
  for (const id of ids) {
    for (const p of participants) {
      for (const x of p.deliveries.get(id) ?? []) {
        if (x.atMs >= failedAt && (first === null || x.atMs < first)) first = x.atMs;
      }
    }
  }
  if (resolvedMs === null) {
    const missing = doubts.flatMap((d) =>
      participants.filter((p) => resolvedAt(d, p) === null).map((p) => `${d.id} (${d.kind}) at ${p.name}`),
    );
    problems.push(
      `not resolved within ${settings.deadlineMs} ms: ${missing.length} of ${doubts.length * participants.length} (transaction, participant): ${missing.slice(0, 6).join(', ')}`,
    );
  }

  // Back: the victim restarted or woken, and the cluster settled.
  const backFrom = performance.now();
  let rejoinMs: number | null = null;
  let lateAnswers = 0;
  let fresh: Promise<FreshBegin[]> | null = null;
  try {
    if (kind === 'kill') {
      await victim.process.exited;
      await victim.start();
    } else {
      // The votes and acknowledgements held so far reach the owner as it
      // wakes: it now has a yes from everyone for transactions the taker
      // has aborted, and must not commit them (its writes are fenced).
      lateAnswers = holder.answerHeld();
      victim.process.child.kill('SIGCONT');
      // And new work for it at once, before it can have noticed it lost its
      // shards: whatever it does with them must be what the store says.
      fresh = freshBegins(round, victim, participants);
    }
    await untilBalanced(instances, settings.settleTimeoutMs);
    rejoinMs = performance.now() - backFrom;
  } catch (error) {
    problems.push(`rejoin: ${error instanceof Error ? error.message.slice(0, 600) : String(error)}`);
  }
  // Time for a woken owner to act on what it read (it must be fenced) before the checks.
  await sleep(AFTER_REJOIN_MS);
  const changesAfter = await shardChanges(instances);
  // What moved, by instance and why; of a killed instance only what its successor did.
  const moves: Record<string, number> = {};
  for (const [i, instance] of instances.entries()) {
    for (const [change, n] of changesAfter[i] ?? new Map<string, number>()) {
      const before = kind === 'kill' && instance === victim ? 0 : (changesBefore[i]?.get(change) ?? 0);
      if (n - before !== 0) moves[`${instance.name} ${change}`] = n - before;
    }
  }
  begins.abort();
  holder.releaseHeld();

  // Nothing contrary at any participant, then or since (a woken owner is fenced).
  for (const d of doubts) {
    for (const p of participants) {
      const wrong = p.deliveries.get(d.id as string)?.filter((x) => x.outcome === contrary(expected(d.kind))) ?? [];
      if (wrong.length > 0) {
        problems.push(
          `wrong outcome: ${d.id} (${d.kind}, expected ${expected(d.kind)}) got ${wrong.length} × ${wrong[0]?.outcome} at ${p.name}, ${Math.round((wrong[0]?.atMs ?? 0) - failedAt)} ms after the failure`,
        );
      }
    }
  }
  let freshAnswers: string | null = null;
  const freshUnanswered: string[] = [];
  if (fresh !== null) {
    const answered = await fresh;
    const counts = new Map<string, number>();
    for (const b of answered) counts.set(b.answer, (counts.get(b.answer) ?? 0) + 1);
    freshAnswers = [...counts].map(([a, n]) => `${n} × ${a}`).join(', ');
    problems.push(...(await checkFresh(answered, [...survivors, victim], participants, settings)));
    // A begin not answered at all: what became of it.
    for (const b of answered.filter((x) => !/^\d+( |$)/.test(x.answer))) {
      const id = participants.map((p) => p.taggedIds.get(b.tag)).find((x) => x !== undefined);
      const seen = participants
        .map(
          (p) =>
            `${p.name}: ${id === undefined ? '-' : `${p.votedYes.has(id) ? 'yes' : 'no vote'} ${(p.deliveries.get(id) ?? []).map((d) => d.outcome).join('+') || 'no outcome'}`}`,
        )
        .join(', ');
      freshUnanswered.push(
        `${b.tag} ${id ?? '(no prepare reached a participant)'}: ${b.answer}; ${seen}; store ${id === undefined ? '-' : await inquiry(survivors[0]?.url ?? victim.url, id)}`,
      );
    }
  }
  // And what the store says, asked of every instance answering (the survivors at least).
  for (const instance of [...survivors, ...(rejoinMs === null ? [] : [victim])]) {
    for (const d of doubts) {
      const said = await inquiry(instance.url, d.id as string);
      if (said !== expected(d.kind)) {
        problems.push(`inquiry: ${instance.name} says ${said} for ${d.id} (${d.kind}, expected ${expected(d.kind)})`);
      }
    }
  }
  return {
    round,
    kind,
    victim: victim.name,
    transactions: doubts.length,
    resolvedMs,
    decidedMs,
    undecidedMs,
    firstMessageMs: since(first),
    rejoinMs,
    lateAnswers,
    freshAnswers,
    freshUnanswered,
    beginsRetried: retried,
    shardMoves: moves,
    problems,
  };
}

function empty(
  round: number,
  kind: FailureKind,
  victim: Instance,
  transactions: number,
): Omit<RoundResult, 'problems'> {
  return {
    round,
    kind,
    victim: victim.name,
    transactions,
    resolvedMs: null,
    decidedMs: null,
    undecidedMs: null,
    firstMessageMs: null,
    rejoinMs: null,
    lateAnswers: 0,
    freshAnswers: null,
    freshUnanswered: [],
    beginsRetried: 0,
    shardMoves: {},
  };
}

interface FreshBegin {
  readonly tag: string;
  /** The HTTP status and the outcome it said, or what went wrong. */
  readonly answer: string;
  readonly saidOutcome: Outcome | null;
}

/** One-shot commits sent to `victim` now, answered normally by both participants; resolves with the answers. */
function freshBegins(round: number, victim: Instance, participants: InDoubtParticipant[]): Promise<FreshBegin[]> {
  return Promise.all(
    Array.from({ length: FRESH_BEGINS }, async (_, i): Promise<FreshBegin> => {
      const tag = `${round}-pause-w${i}`;
      try {
        const res = await fetch(`${victim.url}/v1/transactions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            participants: participants.map((p) => ({ name: p.name, url: p.url, payload: { kind: 'fresh', tag } })),
            commit: true,
          }),
          signal: AbortSignal.timeout(FRESH_ANSWER_TIMEOUT_MS),
        });
        const body = (await res.json().catch(() => null)) as {
          outcome?: string;
          transaction?: { outcome?: string };
          detail?: string;
        } | null;
        const said = body?.outcome ?? body?.transaction?.outcome ?? null;
        return {
          tag,
          // A refusal says why (ownership moving, the owner unreachable, a limit), ids left out so that alike ones count together.
          answer:
            res.status < 300
              ? `${res.status}`
              : `${res.status} (${(body?.detail ?? '').replace(/tx_[0-9A-Z]+/g, 'tx').slice(0, 120)})`,
          saidOutcome: said === 'commit' || said === 'abort' ? said : null,
        };
      } catch (error) {
        return { tag, answer: error instanceof Error ? error.message : String(error), saidOutcome: null };
      }
    }),
  );
}

/**
 * The fresh begins a woken owner received: any that reached a participant
 * must end with the store's outcome at every participant that voted, nothing
 * contrary anywhere, and an answer that named an outcome must be the store's.
 */
async function checkFresh(
  begun: FreshBegin[],
  instances: Instance[],
  participants: InDoubtParticipant[],
  settings: RoundSettings,
): Promise<string[]> {
  const problems: string[] = [];
  for (const b of begun) {
    const id = participants.map((p) => p.taggedIds.get(b.tag)).find((x) => x !== undefined);
    if (id === undefined) {
      if (b.saidOutcome === 'commit')
        problems.push(`fresh ${b.tag}: answered commit, yet no participant was asked to prepare`);
      continue;
    }
    const stored = await inquiry(instances[0]?.url ?? '', id);
    if (stored !== 'commit' && stored !== 'abort') {
      problems.push(`fresh ${id}: the store has no outcome (${stored}) after the cluster settled (answer ${b.answer})`);
      continue;
    }
    if (b.saidOutcome !== null && b.saidOutcome !== stored) {
      problems.push(`fresh ${id}: answered ${b.saidOutcome} (HTTP ${b.answer}), the store says ${stored}`);
    }
    // Who voted yes must hear the outcome; a no (a prepare after the abort) need not.
    const voted = participants.filter((p) => p.votedYes.has(id));
    const reached = () => voted.every((p) => p.resolvedAt(id, stored) !== null);
    const deadline = performance.now() + settings.deadlineMs;
    while (!reached() && performance.now() < deadline) await sleep(POLL_MS);
    for (const p of participants) {
      const wrong = p.deliveries.get(id)?.filter((x) => x.outcome !== stored) ?? [];
      if (wrong.length > 0)
        problems.push(`wrong outcome: fresh ${id} (store: ${stored}) got ${wrong[0]?.outcome} at ${p.name}`);
      else if (voted.includes(p) && p.resolvedAt(id, stored) === null) {
        problems.push(`fresh ${id}: ${stored} not reached at ${p.name} within ${settings.deadlineMs} ms`);
      }
    }
  }
  return problems;
}

/** GET /v1/transactions/{id}/outcome, retried through 503 (ownership moving) for a while; the answer or what went wrong. */
async function inquiry(url: string, id: string): Promise<string> {
  let last = '';
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const res = await fetch(`${url}/v1/transactions/${id}/outcome`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json().catch(() => null)) as { outcome?: string } | null;
      if (res.status === 200 && body?.outcome) return body.outcome;
      last = `HTTP ${res.status}`;
      if (res.status !== 503) return last;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await sleep(100);
  }
  return last;
}

/** Each instance's commitd_cluster_shard_changes_total by change (empty for one that does not answer). */
async function shardChanges(instances: readonly Instance[]): Promise<Map<string, number>[]> {
  return Promise.all(
    instances.map(async (instance) => {
      const changes = new Map<string, number>();
      try {
        for (const [key, value] of await scrape(instance.url)) {
          const change = /^commitd_cluster_shard_changes_total\{change="([^"]+)"\}$/.exec(key)?.[1];
          if (change !== undefined) changes.set(change, value);
        }
      } catch {
        // not answering: nothing known
      }
      return changes;
    }),
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
