#!/usr/bin/env bash
# npm run bench:ab -- A B [PAIRS] [BENCH ARGS...]: is commit B faster than
# commit A? Builds both in temporary worktrees (sharing this checkout's
# node_modules) and runs `npm run bench`'s one-round benchmark alternately,
# A then B, PAIRS times (default 3): on a shared, noisy machine only runs
# interleaved like this compare. Prints each run's summary line.
# Example: npm run bench:ab -- HEAD~1 HEAD 3 --seconds 5
set -euo pipefail

a=${1:?usage: ab.sh COMMIT_A COMMIT_B [PAIRS] [BENCH ARGS...]}
b=${2:?usage: ab.sh COMMIT_A COMMIT_B [PAIRS] [BENCH ARGS...]}
shift 2
pairs=3
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  pairs=$1
  shift
fi

root=$(git rev-parse --show-toplevel)
work=$(mktemp -d -t commitd-ab-XXXXXX)
cleanup() {
  git -C "$root" worktree remove --force "$work/a" 2>/dev/null || true
  git -C "$root" worktree remove --force "$work/b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for side in a b; do
  commit=$([[ $side == a ]] && echo "$a" || echo "$b")
  git -C "$root" worktree add --detach --quiet "$work/$side" "$commit"
  ln -s "$root/node_modules" "$work/$side/node_modules"
  (cd "$work/$side" && npx tsc -p tsconfig.build.json)
  echo "$side = $(git -C "$root" rev-parse --short "$commit") $(git -C "$root" log -1 --format=%s "$commit" | cut -c1-70)"
done

for ((i = 1; i <= pairs; i++)); do
  for side in a b; do
    line=$(cd "$work/$side" && node dist/bench/run.js --rounds 1 --no-write "$@" 2>&1 | grep -E '^(median|1 client)' | tr '\n' ' ')
    echo "$side: $line"
  done
done
