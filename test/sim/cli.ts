// npm run sim -- --seed N          replay one seed, printing what it found
// npm run sim -- --seeds N [--from S]  run N seeds (S, S+1, …), report seeds/second
// Exits 1 if any seed breaks an invariant, printing the command that replays it.

import { int, parseFlags } from '../../src/cli/args.js';
import { simulate } from './simulator.js';

async function main(): Promise<void> {
  const { values: flags } = parseFlags(process.argv.slice(2), {
    seed: int(0, Number.MAX_SAFE_INTEGER),
    seeds: int(1, 100_000_000, 1000),
    from: int(0, Number.MAX_SAFE_INTEGER, 1),
  });
  const one = flags.seed;
  if (one !== undefined) {
    const r = await simulate({ seed: one, trace: (line) => console.log(`  ${line}`) });
    console.log(
      `seed ${one}: ${r.transactions} transactions (${r.committed} committed, ${r.aborted} aborted), ` +
        `${r.coordinatorCrashes} coordinator crashes, ${r.steps} steps, ${r.simulatedMs} simulated ms`,
    );
    for (const v of r.violations)
      console.log(`  VIOLATION at ${v.atMs} ms, step ${v.step}: ${v.invariant}: ${v.detail}`);
    process.exitCode = r.violations.length > 0 ? 1 : 0;
    return;
  }
  const seeds = flags.seeds;
  const from = flags.from;
  const started = performance.now();
  let failed = 0;
  let transactions = 0;
  let crashes = 0;
  let takeovers = 0;
  for (let seed = from; seed < from + seeds; seed++) {
    const r = await simulate({ seed });
    transactions += r.transactions;
    crashes += r.coordinatorCrashes;
    takeovers += r.takeovers;
    if (r.violations.length > 0) {
      failed++;
      const v = r.violations[0];
      console.log(`seed ${seed} FAILED: ${v?.invariant}: ${v?.detail}  (replay: npm run sim -- --seed ${seed})`);
    }
    if ((seed - from + 1) % 1000 === 0) {
      const s = (performance.now() - started) / 1000;
      console.log(`… ${seed - from + 1} seeds, ${((seed - from + 1) / s).toFixed(0)} seeds/s`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `sim: seeds=${seeds} failed=${failed} transactions=${transactions} coordinator_crashes=${crashes} takeovers=${takeovers} ` +
      `seconds=${seconds.toFixed(1)} seeds_per_second=${(seeds / seconds).toFixed(1)}`,
  );
  process.exitCode = failed > 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
