/**
 * An invariant of the protocol. A failure is a bug in commitd, never a
 * caller's mistake: crash loudly (the decision log makes a crash safe)
 * rather than carry on with a state that breaks atomicity.
 */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

export function assert(condition: boolean, invariant: string): asserts condition {
  if (!condition) throw new InvariantError(`invariant violated: ${invariant}`);
}
