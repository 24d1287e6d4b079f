#!/usr/bin/env bash
# npm run bench:ab -- A B [PAIRS] [FLAGS...]: is commit B slower than commit
# A? Builds both in temporary worktrees (sharing this checkout's
# node_modules) and runs this checkout's bench/ab.ts on the two builds: both
# services side by side, every measurement taken of A and B back to back,
# the order alternating, PAIRS times (default 6). On a shared, noisy machine
# only runs interleaved like this compare. FLAGS go to bench/ab.ts
# (--seconds, --clients, --rate, --explicit, --pin).
# Example: npm run bench:ab -- HEAD~1 HEAD 6 --seconds 5 --pin
set -euo pipefail

a=${1:?usage: ab.sh COMMIT_A COMMIT_B [PAIRS] [BENCH ARGS...]}
b=${2:?usage: ab.sh COMMIT_A COMMIT_B [PAIRS] [BENCH ARGS...]}
shift 2
pairs=6
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

node "$root/dist/bench/ab.js" --a "$work/a" --b "$work/b" --pairs "$pairs" "$@"
