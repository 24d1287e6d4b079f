export interface BackoffOptions {
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
}

/**
 * Delay before retry number `attempt` (1, 2, …) of a phase-two message:
 * doubling from the minimum, capped at the maximum, with "equal jitter"
 * (half fixed, half random) so a participant that comes back is not hit by
 * every transaction's retry in the same millisecond.
 */
export function retryDelayMs(attempt: number, options: BackoffOptions, random: () => number): number {
  const exponent = Math.min(attempt - 1, 30);
  const capped = Math.min(options.retryDelayMsMax, options.retryDelayMsMin * 2 ** exponent);
  return Math.round(capped / 2 + (random() * capped) / 2);
}
