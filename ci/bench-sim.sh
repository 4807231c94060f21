#!/usr/bin/env bash
# The simulated cluster's speed, measured side by side in one run:
#   1. the smoke scenario run for real (`gauntlet run`, process runtime) and simulated
#      (`gauntlet sim`), wall time of each and the ratio;
#   2. simulated seconds per wall-clock second for every scenario the simulator
#      accepts, one seed each, and for the whole library together;
#   3. a seed search's rate (seeds per minute) on the smoke scenario.
# Every simulation runs pinned to one core (`taskset -c 0`): the goal is at least 20x
# faster than the real run at the library's rates, on one core per seed.
#
#   ci/bench-sim.sh [SEARCH_SEEDS]        (default 20)
#
# Builds the release binaries unless BENCH_NO_BUILD=1. Writes reports/sim-speed.md.
set -euo pipefail
seeds=${1:-20}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p gauntlet --bin gauntlet
    cargo build --release -q -p gauntlet-sim --bin gauntlet-sim
    cargo build --release -q --bin shop-users --bin shop-catalog --bin shop-payments --bin shop-orders --bin shop-gateway
fi
gauntlet="$root/target/release/gauntlet"
sim="$root/target/release/gauntlet-sim"
one_core=()
command -v taskset >/dev/null && one_core=(taskset -c 0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
simulated() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['simulated_secs'])" "$1/simulated.json"; }

echo "== smoke: real vs simulated"
t0=$(now)
"$gauntlet" run scenarios/smoke.toml --runs "$work/real" >"$work/real.log" 2>&1 || { tail -20 "$work/real.log"; echo "bench-sim: the real smoke run failed" >&2; exit 1; }
real=$(calc "$(now) - $t0")
t0=$(now)
"${one_core[@]}" "$sim" scenarios/smoke.toml --seed 1 --out "$work/sim" >"$work/sim.log" 2>&1 || { tail -20 "$work/sim.log"; echo "bench-sim: the simulated smoke run failed" >&2; exit 1; }
simwall=$(calc "$(now) - $t0")
smoke_sim=$(simulated "$work/sim/seed-1")
echo "real run: ${real} s wall; simulated: ${simwall} s wall for ${smoke_sim} simulated s"
echo "speed-up: $(calc "$real / $simwall")x; simulated s per wall s: $(calc "$smoke_sim / $simwall")"

echo "== the library, one seed each, one core"
rows=""
total_sim=0
total_wall=0
for f in scenarios/*.toml; do
    name=$(basename "$f" .toml)
    t0=$(now)
    verdict=PASSED
    "${one_core[@]}" "$sim" "$f" --out "$work/lib-$name" >"$work/lib-$name.log" 2>&1 || verdict=FAILED
    wall=$(calc "$(now) - $t0")
    if grep -q "cannot be simulated" "$work/lib-$name.log"; then
        why=$(sed -n 's/.*cannot be simulated: //p' "$work/lib-$name.log" | cut -c1-120)
        rows+="| $name | refused: $why | | | |"$'\n'
        echo "$name: refused"
        continue
    fi
    dir=$(ls -d "$work/lib-$name"/seed-* | head -1)
    s=$(simulated "$dir")
    total_sim=$(calc "$total_sim + $s")
    total_wall=$(calc "$total_wall + $wall")
    rows+="| $name | $verdict | $s | $wall | $(calc "$s / $wall") |"$'\n'
    echo "$name: $verdict, $s simulated s in $wall wall s ($(calc "$s / $wall")x)"
done
echo "library: $total_sim simulated s in $total_wall wall s ($(calc "$total_sim / $total_wall")x)"

echo "== seed search: smoke, seeds 1..$((seeds + 1)), one thread"
t0=$(now)
"${one_core[@]}" "$sim" scenarios/smoke.toml --seeds "1..$((seeds + 1))" --out "$work/search" >"$work/search.log" 2>&1 || true
search=$(calc "$(now) - $t0")
rate=$(calc "$seeds / $search * 60")
tail -2 "$work/search.log"
echo "search: $seeds seeds in $search s = $rate seeds/min on one core"

mkdir -p reports
{
    echo "# Simulated cluster speed"
    echo
    echo "Measured by \`ci/bench-sim.sh $seeds\` on $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD), $(nproc) cores; every simulation pinned to one core."
    echo
    echo "| | wall s |"
    echo "|---|---:|"
    echo "| \`gauntlet run scenarios/smoke.toml\` (process runtime, release) | $real |"
    echo "| \`gauntlet sim scenarios/smoke.toml --seed 1\` | $simwall |"
    echo "| **speed-up** | **$(calc "$real / $simwall")x** |"
    echo
    echo "| scenario | verdict | simulated s | wall s | simulated s per wall s |"
    echo "|---|---|---:|---:|---:|"
    printf "%s" "$rows"
    echo "| **library** | | $total_sim | $total_wall | **$(calc "$total_sim / $total_wall")** |"
    echo
    echo "Seed search (smoke, $seeds seeds, buggify, one thread): $rate seeds/min."
} > reports/sim-speed.md
echo "written: reports/sim-speed.md"
