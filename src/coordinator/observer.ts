// What the coordinator reports as it works, through one narrow interface, as
// the log and the participant client do: the service turns it into metrics
// and log lines (assemble.ts); a simulation passes nothing.

import type { AbortReason, Heuristic, Outcome, PhaseTwoMessage } from '../protocol/types.js';

/** Which transaction a report is about: what its log line carries (its id, and its trace's when it has one). */
export interface AboutTransaction {
  readonly txId: string;
  readonly traceId: string | null;
}

export interface HeuristicReport extends AboutTransaction {
  readonly participant: string;
  /** What the participant did on its own. */
  readonly heuristic: Heuristic;
  /** What it was told. */
  readonly decided: PhaseTwoMessage;
}

export interface CoordinatorObserver {
  /** A begin is on disk. */
  begun(): void;
  /** An outcome was decided; `phaseOneSeconds` from the first prepare sent, when there was one. */
  decided(outcome: Outcome, abortReason: AbortReason | null, phaseOneSeconds: number | null): void;
  /** Every participant has its outcome; `phaseTwoSeconds` from the decision. */
  finished(outcome: Outcome, phaseTwoSeconds: number | null): void;
  /** A participant decided against the outcome on its own: not commitd's error, but a person must hear of it. */
  heuristic(report: HeuristicReport): void;
  recovered(count: number): void;
  compacted(count: number): void;
  /** Participants whose phase-two message failed at least the stuck threshold of times in a row, now. */
  stuckParticipants(count: number): void;
  /** Contradicting heuristic outcomes nobody has resolved yet, now. */
  unresolvedHeuristics(count: number): void;
  /** Age of the oldest transaction not finished at every participant, now; 0 when there is none. */
  oldestUnfinishedAgeSeconds(seconds: number): void;
  /** An operator acted on a transaction. */
  operatorAction(action: OperatorAction): void;
}

export type OperatorAction = 'retry' | 'abort' | 'resolve';

export const silentObserver: CoordinatorObserver = {
  begun: () => {},
  decided: () => {},
  finished: () => {},
  heuristic: () => {},
  recovered: () => {},
  compacted: () => {},
  stuckParticipants: () => {},
  unresolvedHeuristics: () => {},
  oldestUnfinishedAgeSeconds: () => {},
  operatorAction: () => {},
};
