// npm run chaos: the built coordinator and three durable participants as real
// processes, a load of one-shot commits, and a killer that SIGKILLs them at
// random moments and starts them again. When the time is up the faults stop,
// everything is left to settle, and a checker compares what the participants
// durably did (their own files), what clients were told, and what the
// coordinator reports. Any disagreement is a violation: the run prints it and
// exits 1.
//
// Flags: --seconds N (load and faults, default 60), --seed N (default: drawn
// and printed), --clients N (concurrent client loops, default 16),
// --no-fraction F (share of prepares a participant votes no on, default 0.05),
// --coordinator-kill-ms MIN,MAX (pause between coordinator kills, default
// 200,5000), --participant-kill-ms MIN,MAX (default 3000,10000),
// --restart-pause-ms MIN,MAX (default 50,1000), --settle-timeout-s N (default
// 120), --keep (keep the work directory; it is always kept after a
// violation).
//
// Minimums, for a run that must show something however slow the machine:
// --min-coordinator-kills N, --min-answers N (client answers naming a
// transaction), --min-each-outcome N (answers of each outcome, commit and
// abort). Load and faults go on past --seconds until every minimum is
// reached, for at most --max-seconds in all (default: --seconds).
//
// The seed fixes the fault schedule (every pause, which process, early kills
// during recovery), not the interleaving: that depends on the machine.
//
// The last line is the summary:
// chaos: seconds=… fault_seconds=… minimums=reached|missed transactions=… committed=… aborted=… coordinator_kills=… participant_kills=… violations=… seed=… …

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { int, num, on, parseFlags, range } from '../src/cli/args.js';
import { Rng } from '../test/support/rng.js';
import { MAIN } from '../test/support/service.js';
import { judge } from './chaos-check.js';
import {
  endFaults,
  type Faults,
  killAndRestart,
  participantKiller,
  sleepUntilOrEnd,
  startFaults,
} from './chaos-faults.js';
import {
  CLIENT_GIVE_UP_MS,
  type Client,
  type ClientRecord,
  type LoadStats,
  newLoadStats,
  oneShot,
} from './chaos-load.js';
import {
  coordinatorLaunch,
  durableParticipants,
  guardRun,
  HOST,
  killAllChildren,
  PARTICIPANT,
  participantsOf,
  runMain,
  runtimeViolations,
  Supervised,
  stablePort,
} from './chaos-processes.js';
import { drainAndSettle, getFrom } from './chaos-settle.js';

// Limits: every loop below is bounded by one of these, in count or in time.
const MAX_SECONDS = 24 * 3600;
const MAX_CLIENTS = 256;
const PARTICIPANT_COUNT = 3;
const CLIENT_REQUEST_TIMEOUT_MS = 30_000;
/** After the faults stop, how long the client loops may take to get their last answers. */
const CLIENT_DRAIN_MS = CLIENT_GIVE_UP_MS + 30_000;
const CHECK_CONCURRENCY = 32;

interface Options {
  seconds: number;
  maxSeconds: number;
  minCoordinatorKills: number;
  minAnswers: number;
  minEachOutcome: number;
  seed: number;
  clients: number;
  noFraction: number;
  coordinatorKillMs: [number, number];
  participantKillMs: [number, number];
  restartPauseMs: [number, number];
  settleTimeoutMs: number;
  keep: boolean;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseFlags(argv, {
    seconds: int(1, MAX_SECONDS, 60),
    seed: int(0, 2 ** 31 - 1),
    clients: int(1, MAX_CLIENTS, 16),
    'no-fraction': num(0, 1, 0.05),
    'coordinator-kill-ms': range(3_600_000, [200, 5000]),
    'participant-kill-ms': range(3_600_000, [3000, 10_000]),
    'restart-pause-ms': range(3_600_000, [50, 1000]),
    'settle-timeout-s': int(1, 3600, 120),
    keep: on(),
    'max-seconds': int(1, MAX_SECONDS),
    'min-coordinator-kills': int(0, 10_000, 0),
    'min-answers': int(0, 10_000_000, 0),
    'min-each-outcome': int(0, 10_000_000, 0),
  });
  const maxSeconds = v['max-seconds'] ?? v.seconds;
  if (maxSeconds < v.seconds) throw new Error('--max-seconds must be at least --seconds');
  return {
    seconds: v.seconds,
    maxSeconds,
    minCoordinatorKills: v['min-coordinator-kills'],
    minAnswers: v['min-answers'],
    minEachOutcome: v['min-each-outcome'],
    seed: v.seed ?? Math.floor(Math.random() * 2 ** 31),
    clients: v.clients,
    noFraction: v['no-fraction'],
    coordinatorKillMs: v['coordinator-kill-ms'],
    participantKillMs: v['participant-kill-ms'],
    restartPauseMs: v['restart-pause-ms'],
    settleTimeoutMs: v['settle-timeout-s'] * 1000,
    keep: v.keep,
  };
}

async function coordinatorKiller(o: Options, coordinator: Supervised, faults: Faults): Promise<void> {
  const rng = Rng.stream(o.seed, 1);
  const maxKills = o.maxSeconds * 20;
  while (coordinator.kills < maxKills && (await sleepUntilOrEnd(rng.between(o.coordinatorKillMs), faults))) {
    await killAndRestart(coordinator, rng, o.restartPauseMs, coordinator.kills < maxKills - 1 ? 0.15 : 0);
  }
}

async function clientLoop(
  loop: number,
  o: Options,
  client: Client,
  participantUrls: string[],
  faults: Faults,
  records: ClientRecord[],
): Promise<void> {
  const maxLogical = o.maxSeconds * 10_000;
  for (let n = 0; n < maxLogical && !faults.over; n++) {
    const key = `chaos-${o.seed}-${loop}-${n}`;
    records.push(await oneShot(client, key, { participants: participantsOf(participantUrls, key) }));
  }
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  for (const f of [MAIN, PARTICIPANT]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  }
  // A hard bound on the whole run, whatever hangs: the load, draining the
  // clients, settling, a list of outcomes to ask at most one request per
  // transaction (generously timed), stopping.
  guardRun('chaos', o.maxSeconds * 1000 + CLIENT_DRAIN_MS + o.settleTimeoutMs + o.maxSeconds * 1000 + 5 * 60_000);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-chaos-'));
  const startedAt = Date.now();
  const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(0)}s`;
  console.error(`chaos: work directory ${work}, seed ${o.seed}, ${o.seconds} s of load and faults`);

  const coordinatorPort = await stablePort();
  const coordinatorUrl = `http://${HOST}:${coordinatorPort}`;
  const coordinator = new Supervised('coordinator', coordinatorLaunch(coordinatorPort, path.join(work, 'data')));
  const {
    processes: participants,
    urls: participantUrls,
    files,
  } = await durableParticipants(work, PARTICIPANT_COUNT, o.noFraction);
  await Promise.all([coordinator.start(), ...participants.map((p) => p.start())]);

  const clientPool = new Pool(coordinatorUrl, { connections: o.clients, pipelining: 1 });
  const checkPool = new Pool(coordinatorUrl, { connections: CHECK_CONCURRENCY, pipelining: 1 });
  try {
    // Load and faults.
    const { faults, end } = startFaults();
    const faultsStartedAt = Date.now();
    const records: ClientRecord[] = [];
    const stats: LoadStats = newLoadStats();
    const count = (a: number | 'gave-up') => records.filter((r) => r.answer === a).length;
    const progress = setInterval(() => {
      console.error(
        `chaos progress: t=${elapsed()} answers=${records.length} (200 ${count(200)}, 202 ${count(202)}, 409 ${count(409)}) ` +
          `coordinator_kills=${coordinator.kills} participant_kills=${participants.reduce((n, p) => n + p.kills, 0)} ` +
          `refused_or_reset=${stats.networkErrors} unavailable=${stats.unavailable}`,
      );
    }, 10_000);
    const told = (t: 'commit' | 'abort') => records.filter((r) => r.told === t).length;
    const missing = (): string | null => {
      const short: string[] = [];
      if (coordinator.kills < o.minCoordinatorKills)
        short.push(`coordinator_kills ${coordinator.kills} < ${o.minCoordinatorKills}`);
      const answers = told('commit') + told('abort');
      if (answers < o.minAnswers) short.push(`answers ${answers} < ${o.minAnswers}`);
      if (told('commit') < o.minEachOutcome) short.push(`commit answers ${told('commit')} < ${o.minEachOutcome}`);
      if (told('abort') < o.minEachOutcome) short.push(`abort answers ${told('abort')} < ${o.minEachOutcome}`);
      return short.length === 0 ? null : short.join(', ');
    };
    const faultsEnd = endFaults('chaos', o, end, missing);
    const killers = [coordinatorKiller(o, coordinator, faults), participantKiller(o, participants, faults)];
    const loops = Array.from({ length: o.clients }, (_, i) => {
      const rng = Rng.stream(o.seed, 100 + i);
      const client: Client = { pick: () => clientPool, rng, stats, requestTimeoutMs: CLIENT_REQUEST_TIMEOUT_MS };
      return clientLoop(i, o, client, participantUrls, faults, records);
    });
    await faultsEnd;
    const faultSeconds = (Date.now() - faultsStartedAt) / 1000;
    const unreached = missing();
    if (unreached !== null) console.error(`chaos: minimums not reached within ${o.maxSeconds} s: ${unreached}`);
    await Promise.all(killers);
    clearInterval(progress);

    const { settled, outcomes } = await drainAndSettle({
      label: 'chaos',
      elapsed,
      loops,
      drainMs: CLIENT_DRAIN_MS,
      ensureUp: async () => {
        for (const x of [coordinator, ...participants]) if (!x.alive) await x.start();
      },
      files,
      records,
      get: getFrom(checkPool),
      settleTimeoutMs: o.settleTimeoutMs,
    });

    // Stop cleanly; the files are complete once the participants are gone.
    await clientPool.close();
    await checkPool.close();
    const code = await coordinator.kill('SIGTERM');
    if (code !== 0) {
      runtimeViolations.push({
        kind: 'unclean-stop',
        tx: null,
        detail: `the coordinator exited ${code} on SIGTERM; last output:\n${coordinator.tail.lines(30)}`,
      });
    }
    for (const p of participants) await p.kill('SIGTERM');

    const result = judge(files, { records, settled, outcomes });
    const { violations, replays } = result;
    const participantKills = participants.reduce((n, p) => n + p.kills, 0);
    console.log(
      `chaos: seconds=${o.seconds} fault_seconds=${faultSeconds.toFixed(0)} minimums=${unreached === null ? 'reached' : 'missed'} transactions=${result.transactions} committed=${result.committed} ` +
        `aborted=${result.aborted} coordinator_kills=${coordinator.kills} participant_kills=${participantKills} ` +
        `violations=${violations.length} seed=${o.seed} clients=${o.clients} logical=${records.length} ` +
        `answered_200=${count(200)} answered_202=${count(202)} answered_409=${count(409)} gave_up=${count('gave-up')} ` +
        `refused_or_reset=${stats.networkErrors} unavailable=${stats.unavailable} ` +
        `unknown_id_aborts=${replays.reduce((n, r) => n + r.unknownAborts, 0)} wall=${elapsed()}`,
    );
    if (violations.length > 0 || o.keep) console.error(`chaos: work directory kept: ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
    return violations.length > 0 ? 1 : 0;
  } catch (error) {
    console.error(`chaos: work directory kept: ${work}`);
    console.error(`chaos: coordinator output (last lines):\n${coordinator.tail.lines(30)}`);
    throw error;
  } finally {
    killAllChildren();
    await clientPool.destroy().catch(() => {});
    await checkPool.destroy().catch(() => {});
  }
}

runMain('chaos', main);
