// Where the simulator records what it found. Each check names the invariant
// it guards, so a failing seed says which rule broke.

export type Invariant =
  | 'TCConsistent: no participant commits while another aborts'
  | 'an outcome, once decided, never changes'
  | 'commit is decided only when every participant voted yes or read-only'
  | 'no commit message leaves before the commit decision is durable'
  | 'commit goes only to participants that voted yes'
  | 'a transaction is forgotten only after every participant acknowledged'
  | 'what a client was told survives: an acknowledged outcome is the outcome'
  | 'an acknowledged begin is never lost'
  | 'a transaction keeps the traceparent it was begun in, through crashes and recovery'
  | 'liveness: when faults stop, every transaction finishes and no participant stays prepared'
  | 'the coordinator asserts its own invariants'
  | "a transaction's history never contradicts its decision"
  | "an operator's resolve is applied once and in the history"
  | 'the outcome inquiry never answers the contrary outcome';

export interface Violation {
  readonly invariant: Invariant;
  readonly detail: string;
  readonly atMs: number;
  readonly step: number;
}

export class Checks {
  readonly violations: Violation[] = [];

  constructor(private readonly where: () => { atMs: number; step: number }) {}

  fail(invariant: Invariant, detail: string): void {
    // One report per invariant and transaction is enough to act on.
    if (this.violations.some((v) => v.invariant === invariant && v.detail === detail)) return;
    this.violations.push({ invariant, detail, ...this.where() });
  }
}
