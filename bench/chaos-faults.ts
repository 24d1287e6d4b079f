// The faults of a chaos run (npm run chaos, npm run chaos:cluster), each kind
// drawn from its own seeded stream so that one kind's draws never shift
// another's, and the end of load and faults: after --seconds, or later once
// the run's minimums are reached, never after --max-seconds.

import { Rng } from '../test/support/rng.js';
import { type Supervised, sleep } from './chaos-processes.js';

/** Load and faults run until `over`; when that is depends on what the run has reached (endFaults). */
export interface Faults {
  over: boolean;
  readonly ended: Promise<void>;
}

/** Faults that are not over yet, and the function that ends them. */
export function startFaults(): { faults: Faults; end: () => void } {
  let end = () => {};
  const faults: Faults = { over: false, ended: new Promise<void>((resolve) => (end = resolve)) };
  return {
    faults,
    end: () => {
      faults.over = true;
      end();
    },
  };
}

/** Sleeps `ms`, or less if the faults end meanwhile; true while they go on. */
export async function sleepUntilOrEnd(ms: number, faults: Faults): Promise<boolean> {
  await Promise.race([sleep(ms), faults.ended]);
  return !faults.over;
}

/**
 * Ends load and faults after `seconds`, or later, once the minimums are
 * reached, but never after `maxSeconds`: a slow machine runs longer instead
 * of showing less.
 */
export async function endFaults(
  label: string,
  limits: { readonly seconds: number; readonly maxSeconds: number },
  end: () => void,
  reached: () => string | null,
): Promise<void> {
  const startedAt = Date.now();
  await sleep(limits.seconds * 1000);
  const lastEnd = startedAt + limits.maxSeconds * 1000;
  const missing = reached();
  if (missing !== null && Date.now() < lastEnd) {
    console.error(`${label}: after ${limits.seconds} s ${missing}: going on for up to ${limits.maxSeconds} s in all`);
  }
  while (reached() !== null && Date.now() < lastEnd) await sleep(Math.min(250, lastEnd - Date.now()));
  end();
}

/**
 * SIGKILLs a service and starts it again after a pause; now and then
 * (`killInStartChance`) kills it once more while it is starting: in the
 * middle of opening its log or of recovery.
 */
export async function killAndRestart(
  service: Supervised,
  rng: Rng,
  restartPauseMs: [number, number],
  killInStartChance: number,
): Promise<void> {
  await service.kill('SIGKILL');
  await sleep(rng.between(restartPauseMs));
  if (rng.chance(killInStartChance)) {
    service.spawn();
    await sleep(rng.between([0, 1000]));
    await service.kill('SIGKILL');
    await sleep(rng.between(restartPauseMs));
  }
  await service.start();
}

export interface ParticipantFaults {
  readonly seed: number;
  readonly maxSeconds: number;
  readonly participantKillMs: [number, number];
  readonly restartPauseMs: [number, number];
}

/** SIGKILLs participants (one, sometimes two at once) at random moments and starts them again. */
export async function participantKiller(
  o: ParticipantFaults,
  participants: Supervised[],
  faults: Faults,
): Promise<void> {
  const rng = Rng.stream(o.seed, 2);
  const maxKills = o.maxSeconds * 5;
  let kills = 0;
  while (kills < maxKills && (await sleepUntilOrEnd(rng.between(o.participantKillMs), faults))) {
    const first = rng.between([0, participants.length - 1]);
    const victims = [first];
    // Sometimes two at once.
    if (rng.chance(0.2)) victims.push((first + 1 + rng.between([0, participants.length - 2])) % participants.length);
    for (const i of victims) await participants[i]?.kill('SIGKILL');
    kills += victims.length;
    await sleep(rng.between(o.restartPauseMs));
    for (const i of victims) await participants[i]?.start();
  }
}
