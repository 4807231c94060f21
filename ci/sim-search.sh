#!/usr/bin/env bash
# A seed search over every scenario the simulator accepts: `gauntlet sim --seeds 1..N`
# with buggify, on every core. Prints each scenario's tally and every failing seed with
# the commands that replay it; exits 1 if any seed failed.
#
#   ci/sim-search.sh [SEEDS] [JOBS]        (default 200 seeds, 2 jobs)
#
# Builds the release simulator unless BENCH_NO_BUILD=1. Runs go to runs/sim-search/.
set -euo pipefail
seeds=${1:-200}
jobs=${2:-2}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p gauntlet-sim --bin gauntlet-sim
fi
sim="$root/target/release/gauntlet-sim"
failed=0
started=$(date +%s)
for f in scenarios/*.toml; do
    name=$(basename "$f" .toml)
    log=$(mktemp)
    set +e
    "$sim" "$f" --seeds "1..$((seeds + 1))" --jobs "$jobs" --out "runs/sim-search/$name" >"$log" 2>&1
    code=$?
    set -e
    if [ "$code" = 2 ] && grep -q "cannot be simulated" "$log"; then
        echo "$name: refused ($(sed -n 's/.*cannot be simulated: //p' "$log" | cut -c1-100)...)"
    else
        summary=$(grep -E "^[0-9]+ seeds in" "$log" || echo "no summary (exit $code)")
        echo "$name: $summary"
        grep -E "^  seed |^    replay" "$log" || true
        [ "$code" = 0 ] || failed=1
    fi
    rm -f "$log"
done
echo "searched in $(( $(date +%s) - started )) s"
exit $failed
