#!/usr/bin/env bash
# Interleaved timing of libraries written by `bonsai compile` (A/B comparisons on a noisy
# machine): ROUNDS times, each library runs RUNS times through bonsai-rt; prints the minimum
# and the median of the per-round medians.
#
#   tools/scripts/ab.sh IN.npz RUNS ROUNDS DIR_A DIR_B [DIR ...]
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,6p' "$0"
  exit 2
fi
here="$(cd "$(dirname "$0")/../.." && pwd)"
rt="${BONSAI_RT:-$here/target/release/bonsai-rt}"
in=$1; runs=$2; rounds=$3; shift 3
declare -A res
for _ in $(seq "$rounds"); do
  for l in "$@"; do
    t=$("$rt" "$l" --input "$in" --runs "$runs" | awk '/^median/ {print $5}')
    res[$l]="${res[$l]:-} $t"
  done
done
for l in "$@"; do
  echo "$l $(echo ${res[$l]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {printf "min %.1f us, median %.1f us (%d rounds)", a[1], a[int((NR+1)/2)], NR}')"
done
