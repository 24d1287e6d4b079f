// npm run bench:takeover: how long transactions left in doubt by a failed
// instance wait for another instance to finish them (issue #13). A private
// PostgreSQL cluster, two commitd instances sharing one schema on it (fixed
// ports, advertised URLs), two participants in this process (one steady, one
// that holds phase two and hangs the prepares of undecided transactions
// while the owner lives: bench/in-doubt-participant.ts). Each round
// (bench/takeover-round.ts) begins transactions at one instance, leaves some
// decided commit with phase two unfinished and some prepared but undecided,
// fails that instance (SIGKILL, or SIGSTOP), and measures from the failure
// until every one is resolved at every participant with the right outcome
// (commit for the decided, abort for the undecided). The failed instance is
// then started again or woken (SIGCONT) and the round waits until it owns
// shards again. Failure kinds alternate, and so do the victims. Before a
// paused owner is woken, the prepares and deliveries held for it are
// answered (a yes from everyone for transactions the taker has aborted):
// fenced, it must not commit them, and nothing contrary may reach a
// participant then either.
//
// A round with a wrong outcome, or one not reached within --deadline-ms
// (10 s), or a cluster that does not settle again, is a failure: the command
// exits 1. The goals are printed next to the figures, not asserted.
//
// Flags: --rounds N (per failure kind, default 20), --decided N and
// --undecided N (transactions per round, default 4 each), --lease-ms N
// (COMMITD_LEASE_MS, default: commitd's own, 3000), --probe-interval-ms N
// (COMMITD_PEER_PROBE_INTERVAL_MS, default: commitd's own, 250),
// --peer-silence-ms N (COMMITD_PEER_SILENCE_MS, default: commitd's own, 1500),
// --deadline-ms N (default 10000), --summary FILE (the summary as JSON),
// --no-write (no bench/results/takeover.json), --quiet (no instance output).

import fs from 'node:fs';
import { int, on, parseFlags, str } from '../src/cli/args.js';
import { postgresAvailable, startPostgres } from '../test/support/postgres-cluster.js';
import { startCommitdCluster, untilBalanced } from './cluster.js';
import { startInDoubtParticipant } from './in-doubt-participant.js';
import { saveResult } from './processes.js';
import { type FailureKind, FRESH_ANSWER_TIMEOUT_MS, type RoundResult, takeoverRound } from './takeover-round.js';

const GOALS_MS: Record<FailureKind, number> = { kill: 1_000, pause: 3_000 };
const NEVER_ABOVE_MS = 5_000;
const KINDS: readonly FailureKind[] = ['kill', 'pause'];
const SIGNAL: Record<FailureKind, string> = { kill: 'SIGKILL', pause: 'SIGSTOP, SIGCONT after measuring' };

function parseOptions(argv: string[]) {
  const { values: v } = parseFlags(argv, {
    rounds: int(1, 10_000, 20),
    decided: int(0, 1_000, 4),
    undecided: int(0, 1_000, 4),
    'lease-ms': int(100, 600_000),
    'probe-interval-ms': int(10, 60_000),
    'peer-silence-ms': int(50, 600_000),
    'deadline-ms': int(100, 600_000, 10_000),
    summary: str(),
    'no-write': on(),
    quiet: on(),
  });
  if (v.decided + v.undecided === 0) throw new Error('--decided and --undecided cannot both be 0');
  return v;
}

function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

const ms = (x: number | null) => (x === null ? '–' : `${Math.round(x)}`);

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const missing = postgresAvailable();
  if (missing) throw new Error(`bench:takeover needs PostgreSQL: ${missing}`);
  const instanceEnv: Record<string, string> = {
    // The owner must stay undecided until it is failed: its own prepare timeout must not abort first.
    COMMITD_PREPARE_TIMEOUT_MS: '60000',
    ...(o['lease-ms'] === undefined ? {} : { COMMITD_LEASE_MS: String(o['lease-ms']) }),
    ...(o['probe-interval-ms'] === undefined ? {} : { COMMITD_PEER_PROBE_INTERVAL_MS: String(o['probe-interval-ms']) }),
    ...(o['peer-silence-ms'] === undefined ? {} : { COMMITD_PEER_SILENCE_MS: String(o['peer-silence-ms']) }),
  };
  const settings = {
    decided: o.decided,
    undecided: o.undecided,
    deadlineMs: o['deadline-ms'],
    setupTimeoutMs: 10_000,
    settleTimeoutMs: 30_000,
  };
  console.log(
    `commitd bench:takeover: ${o.rounds} rounds of each kind (${KINDS.map((k) => `${k}: ${SIGNAL[k]}`).join('; ')}), ` +
      `2 instances on a private PostgreSQL cluster, per round ${o.decided} decided commit (phase two unfinished) + ${o.undecided} undecided (prepared) transactions across 2 participants`,
  );
  console.log(
    `settings: COMMITD_LEASE_MS ${o['lease-ms'] ?? '3000 (default)'}, COMMITD_PEER_PROBE_INTERVAL_MS ${o['probe-interval-ms'] ?? '250 (default)'}, ` +
      `COMMITD_PEER_SILENCE_MS ${o['peer-silence-ms'] ?? '1500 (default)'}, ` +
      `COMMITD_PREPARE_TIMEOUT_MS 60000, other settings commitd's defaults; a round fails if not resolved within ${o['deadline-ms']} ms`,
  );
  console.log(
    'pause rounds: just before SIGCONT the held prepares are answered yes (and held deliveries answered): the woken owner reads a yes from everyone for transactions the taker aborted and must not commit them; ' +
      '4 one-shot commits are sent to it as it wakes: each must end as the store says at every participant that voted',
  );

  const store = await startPostgres({ max_connections: '100' });
  const cluster = await startCommitdCluster(store, {
    count: 2,
    schema: 'takeover',
    env: instanceEnv,
    echo: !o.quiet,
  });
  const steady = await startInDoubtParticipant('steady', false);
  const holder = await startInDoubtParticipant('holder', true);
  const results: RoundResult[] = [];
  let fatal: unknown = null;
  try {
    await untilBalanced(cluster.instances, settings.settleTimeoutMs);
    for (let round = 0; round < o.rounds; round++) {
      for (const kind of KINDS) {
        const victim = cluster.instances[round % cluster.instances.length];
        if (victim === undefined) throw new Error('no instance');
        const r = await takeoverRound({
          round,
          kind,
          victim,
          instances: cluster.instances,
          steady,
          holder,
          settings,
        });
        results.push(r);
        console.log(
          `round ${String(round + 1).padStart(3)} ${kind.padEnd(5)} ${r.victim}: resolved ${ms(r.resolvedMs).padStart(5)} ms ` +
            `(decided ${ms(r.decidedMs)}, undecided ${ms(r.undecidedMs)}, first message ${ms(r.firstMessageMs)}), back with shards after ${ms(r.rejoinMs)} ms` +
            (r.kind === 'pause'
              ? `; ${r.lateAnswers} held answers released to it before SIGCONT, begins sent as it woke: ${r.freshAnswers}`
              : '') +
            (r.beginsRetried > 0
              ? `; ${r.beginsRetried} begins retried after a 503 (ownership moving) before the failure`
              : '') +
            `; shard moves: ${
              Object.entries(r.shardMoves)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ') || 'none'
            }` +
            (r.freshUnanswered.length > 0
              ? `\n  UNANSWERED BEGIN: ${r.freshUnanswered.join('\n  UNANSWERED BEGIN: ')}`
              : '') +
            (r.problems.length > 0 ? `\n  FAILED: ${r.problems.join('\n  FAILED: ')}` : ''),
        );
      }
    }
  } catch (error) {
    fatal = error;
  }

  const summary = KINDS.map((kind) => {
    const rounds = results.filter((r) => r.kind === kind);
    const times = rounds
      .map((r) => r.resolvedMs)
      .filter((x): x is number => x !== null)
      .sort((a, b) => a - b);
    return {
      kind,
      rounds: rounds.length,
      transactions: rounds.reduce((n, r) => n + r.transactions, 0),
      resolved: times.length,
      p50Ms: percentile(times, 0.5),
      p90Ms: percentile(times, 0.9),
      maxMs: times.length === 0 ? null : (times[times.length - 1] as number),
      goalMs: GOALS_MS[kind],
      failedRounds: rounds.filter((r) => r.problems.length > 0).length,
    };
  });
  console.log('\ntime from the failure until every transaction it left in doubt was resolved at every participant:');
  for (const s of summary) {
    console.log(
      `${s.kind.padEnd(5)} (${SIGNAL[s.kind]}): ${s.rounds} rounds, ${s.transactions} transactions: p50 ${ms(s.p50Ms)} ms, p90 ${ms(s.p90Ms)} ms, max ${ms(s.maxMs)} ms` +
        ` [goal < ${s.goalMs} ms, never above ${NEVER_ABOVE_MS} ms]; failed rounds ${s.failedRounds}`,
    );
  }
  // Not a failure (the fence keeps it correct), but every shard moving twice.
  const blamed = results.filter((r) => r.kind === 'pause' && (r.shardMoves[`${r.victim} owner-gone`] ?? 0) > 0);
  if (blamed.length > 0) {
    console.log(
      `NOTE: in ${blamed.length} of ${results.filter((r) => r.kind === 'pause').length} pause rounds the woken instance took shards from the healthy one as if it were gone ` +
        `(${blamed.map((r) => `round ${r.round + 1}: ${r.shardMoves[`${r.victim} owner-gone`]}`).join(', ')})`,
    );
  }
  const unanswered = results.flatMap((r) => r.freshUnanswered);
  if (unanswered.length > 0) {
    console.log(
      `NOTE: ${unanswered.length} one-shot commits sent to a woken instance had no answer within ${FRESH_ANSWER_TIMEOUT_MS / 1000} s (outcomes checked: see the rounds)`,
    );
  }
  const failures = results.filter((r) => r.problems.length > 0);
  for (const r of failures) console.log(`FAILED round ${r.round + 1} ${r.kind} ${r.victim}: ${r.problems.join('; ')}`);
  if (fatal !== null) console.log(`FAILED: the run stopped: ${fatal instanceof Error ? fatal.stack : String(fatal)}`);

  const report = {
    settings: {
      ...settings,
      rounds: o.rounds,
      leaseMs: o['lease-ms'] ?? null,
      peerSilenceMs: o['peer-silence-ms'] ?? null,
      probeIntervalMs: o['probe-interval-ms'] ?? null,
    },
    summary,
    failures: failures.length + (fatal === null ? 0 : 1),
    rounds: results,
  };
  if (o.summary !== undefined) fs.writeFileSync(o.summary, `${JSON.stringify(report, null, 2)}\n`);
  if (!o['no-write']) saveResult('takeover', 'bench:takeover', report);

  await steady.close();
  await holder.close();
  await cluster.close();
  store.destroy();
  process.exitCode = report.failures === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
