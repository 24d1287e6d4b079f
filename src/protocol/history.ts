// What happened to a transaction, in order, for operators: derived from each
// step of the protocol (what changed, what answered), plus the calls that
// asked for it. Pure: the runtime adds the time a participant took to answer
// and who called, and keeps the entries with the transaction.
//
// Bounded: a participant unreachable for a day is retried thousands of times,
// so phase-two attempts are recorded one by one only at first, then at powers
// of two (the participant's `attempts` and `lastError` are always current);
// and the runtime caps the entries per transaction (HISTORY_ENTRIES_MAX).

import type { AbortReason, Event, Heuristic, Outcome, PhaseTwoMessage, Step, Transaction, Vote } from './types.js';

/** Who made a call: a token's role and id (null without tokens), and the caller's address. */
export interface Actor {
  readonly role: string | null;
  readonly tokenId: string | null;
  readonly address: string | null;
}

export type DecisionReason = 'all-voted-yes' | AbortReason;

/** An entry without its time: what happened. */
export type HistoryFact =
  | { readonly type: 'begun'; readonly by: Actor | null; readonly oneShot: boolean; readonly participants: string[] }
  | { readonly type: 'enlisted'; readonly participant: string }
  | { readonly type: 'requested'; readonly action: 'prepare' | 'commit' | 'abort'; readonly by: Actor | null }
  | {
      readonly type: 'voted';
      readonly participant: string;
      readonly vote: Vote;
      readonly reason?: string;
      readonly latencyMs?: number;
    }
  | { readonly type: 'vote-lost'; readonly participant: string; readonly reason: string; readonly latencyMs?: number }
  | { readonly type: 'decided'; readonly outcome: Outcome; readonly reason: DecisionReason }
  | {
      readonly type: 'delivery-failed';
      readonly participant: string;
      readonly message: PhaseTwoMessage;
      readonly attempt: number;
      readonly error: string;
      readonly latencyMs?: number;
    }
  | {
      readonly type: 'acknowledged';
      readonly participant: string;
      readonly message: PhaseTwoMessage;
      readonly latencyMs?: number;
    }
  | { readonly type: 'heuristic'; readonly participant: string; readonly heuristic: Heuristic }
  | { readonly type: 'recovered'; readonly state: Transaction['state'] }
  | { readonly type: 'finished' }
  | { readonly type: 'operator-retry'; readonly by: Actor | null }
  | {
      readonly type: 'heuristic-resolved';
      readonly participant: string;
      readonly note: string;
      readonly by: Actor | null;
    }
  | { readonly type: 'truncated'; readonly afterEntries: number };

export type HistoryEntry = HistoryFact & { readonly atMs: number };

/** Entries one transaction keeps; past it only the decision, heuristics and the end are still recorded. */
export const HISTORY_ENTRIES_MAX = 200;

/** Phase-two attempts recorded one by one: the first eight, then the 16th, 32nd, 64th... */
export function attemptIsRecorded(attempt: number): boolean {
  return attempt <= 8 || (attempt & (attempt - 1)) === 0;
}

/** Entries that are recorded even past the cap: few per transaction, and what an operator needs most. */
export function entryOutlivesCap(fact: HistoryFact): boolean {
  return fact.type === 'decided' || fact.type === 'heuristic' || fact.type === 'finished';
}

/**
 * What one step did, as history. `latencyMs` is how long the participant took
 * to answer when `event` is its answer. Nothing for a step that changed nothing.
 */
export function historyOfStep(before: Transaction, event: Event, result: Step, latencyMs?: number): HistoryFact[] {
  if (!result.changed) return [];
  const facts: HistoryFact[] = [];
  const after = result.tx;
  const latency = latencyMs === undefined ? {} : { latencyMs: Math.round(latencyMs) };
  switch (event.type) {
    case 'recover':
      facts.push({ type: 'recovered', state: before.state });
      break;
    case 'enlist':
      if (result.refusal === null) facts.push({ type: 'enlisted', participant: event.participant.name });
      break;
    case 'vote':
      facts.push({
        type: 'voted',
        participant: event.participant,
        vote: event.vote,
        ...(event.reason ? { reason: event.reason } : {}),
        ...latency,
      });
      break;
    case 'vote-lost':
      facts.push({ type: 'vote-lost', participant: event.participant, reason: event.reason, ...latency });
      break;
    case 'acknowledged':
      if (after.outcome !== null) {
        facts.push({ type: 'acknowledged', participant: event.participant, message: after.outcome, ...latency });
      }
      break;
    case 'heuristic':
      facts.push({ type: 'heuristic', participant: event.participant, heuristic: event.heuristic });
      break;
    case 'delivery-failed': {
      const attempt = after.participants.find((p) => p.name === event.participant)?.attempts ?? 0;
      if (after.outcome !== null && attemptIsRecorded(attempt)) {
        facts.push({
          type: 'delivery-failed',
          participant: event.participant,
          message: after.outcome,
          attempt,
          error: event.error,
          ...latency,
        });
      }
      break;
    }
    default:
      break;
  }
  if (before.outcome === null && after.outcome !== null) {
    facts.push({ type: 'decided', outcome: after.outcome, reason: after.abortReason ?? 'all-voted-yes' });
  }
  // A message sent is not an entry of its own: its answer is (a vote, an
  // acknowledgement, a failure, each with how long it took), which says both
  // when it left and what came back, at half the entries.
  if (before.finishedAtMs === null && after.finishedAtMs !== null) facts.push({ type: 'finished' });
  return facts;
}
