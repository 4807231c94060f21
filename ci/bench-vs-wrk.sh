#!/usr/bin/env bash
# Gauntlet's load generator against wrk, on the same trivial local endpoint, in one go.
#
# Prints, for each round and overall, the requests each tool completed per CPU-second
# it used (user + system, from the kernel's accounting of the child process), and the
# ratio gauntlet / wrk. Goal: a ratio of at least 1.
#
#   ci/bench-vs-wrk.sh [CONNECTIONS] [SECONDS] [ROUNDS]
#
# First both run as a closed loop (wrk's only mode) on one thread with the same
# connections. Then gauntlet runs the open model (the mode whose latency is corrected
# for coordinated omission) at fixed rates, OPEN_RATES (default "1000 15000"), and its
# CPU per request is set against wrk's closed-loop CPU per request from the same run;
# an entry RATE:BATCH sets `--start-batch` (default "1000 15000 15000:2ms").
# Goals: at 15,000 req/s no more CPU per request than wrk's closed loop (ratio >= 1); at
# 1,000 req/s at most twice it (ratio >= 0.5). Sending on time costs wake-ups a closed
# loop never pays (each start and each answer may find the thread asleep), and a
# wake-up's price is the kernel's: so each rate is also run by the floor generator
# `ci/open-floor.c` (one C thread, a timerfd, epoll, a fixed GET, nothing else) with the
# same rate, batch and connections. Its CPU per request is the timer floor; the line
# "above the floor" is what gauntlet adds to it, set against wrk's closed loop.
# Needs `wrk` (Debian package `wrk`); installs it with apt-get when missing and root.
set -euo pipefail

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        echo "bench-vs-wrk: wrk is not installed (apt-get install wrk)" >&2
        exit 2
    fi
fi

# BENCH_NO_BUILD=1 uses the release binaries already built.
source "$(dirname "$0")/bench-common.sh"

work=$(mktemp -d)
build_floor open-floor "$work"
log="$work/target.log"
"$target" 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
    grep -q "listening on" "$log" && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$log")
[ -n "$addr" ] || { echo "bench-vs-wrk: the target did not start" >&2; exit 3; }
url="http://$addr/"
echo "target $url, $connections connections, ${seconds}s per run, $rounds rounds"

# Runs a command, prints "REQUESTS CPU_SECONDS" (CPU from bash's `time`: the child's
# user + system time as the kernel accounted it).
measure() {
    local kind=$1; shift
    local out cpu
    out=$(mktemp)
    TIMEFORMAT='%U %S'
    cpu=$( { time "$@" >"$out" 2>&1; } 2>&1 )
    local requests
    if [ "$kind" = wrk ]; then
        requests=$(awk '/requests in/ {print $1}' "$out")
    else
        requests=$(awk '/^summary:/ {print $2}' "$out")
    fi
    rm -f "$out"
    echo "$requests $(echo "$cpu" | awk '{print $1 + $2}')"
}


total_g=0; cpu_g=0; total_w=0; cpu_w=0
for round in $(seq 1 "$rounds"); do
    read -r wr wc < <(measure wrk wrk -t1 -c"$connections" -d"${seconds}s" "$url")
    read -r gr gc < <(measure gauntlet "$gauntlet" load "$url" -c "$connections" -d "${seconds}s" --threads 1)
    printf 'round %d: wrk %d req / %.2f cpu-s = %.0f req/cpu-s; gauntlet %d req / %.2f cpu-s = %.0f req/cpu-s; ratio %.2f\n' \
        "$round" "$wr" "$wc" "$(calc "$wr / $wc")" "$gr" "$gc" "$(calc "$gr / $gc")" \
        "$(calc "($gr / $gc) / ($wr / $wc)")"
    total_w=$((total_w + wr)); total_g=$((total_g + gr))
    cpu_w=$(calc "$cpu_w + $wc"); cpu_g=$(calc "$cpu_g + $gc")
done
printf 'overall: wrk %.0f req/cpu-s, gauntlet %.0f req/cpu-s, ratio gauntlet/wrk %.2f\n' \
    "$(calc "$total_w / $cpu_w")" "$(calc "$total_g / $cpu_g")" \
    "$(calc "($total_g / $cpu_g) / ($total_w / $cpu_w)")"

# The open model at fixed rates, against wrk's closed loop above.
wrk_rate=$(calc "$total_w / $cpu_w")
for entry in ${OPEN_RATES:-1000 15000 15000:2ms}; do
    rate=${entry%%:*}
    batch=200us
    [ "$entry" = "$rate" ] || batch=${entry#*:}
    out=$(mktemp)
    TIMEFORMAT='%U %S'
    cpu=$( { time "$gauntlet" load "$url" --rate "$rate" --start-batch "$batch" -d "${seconds}s" -c "$connections" --threads 1 >"$out" 2>&1; } 2>&1 )
    gr=$(awk '/^summary:/ {print $2}' "$out")
    dropped=$(awk '/^flow starts:/ {print $NF}' "$out")
    errors=$(awk '/^errors:/ {s=0; for (i=3; i<=NF; i+=2) s+=$i; print s}' "$out")
    late=$(sed -n 's/.*send lateness.*p50 \([0-9.]*ms\).*p99 \([0-9.]*ms\).*/p50 \1, p99 \2/p' "$out")
    p99=$(sed -n 's/.*latency (corrected, from intended send):.*p99 \([0-9.]*ms\).*/\1/p' "$out" | head -1)
    rm -f "$out"
    gc=$(echo "$cpu" | awk '{print $1 + $2}')
    case "$batch" in
        *us) batch_us=${batch%us} ;;
        *ms) batch_us=$(calc "${batch%ms} * 1000") ;;
        *) echo "bench-vs-wrk: a batch is written like 200us or 2ms, not $batch" >&2; exit 2 ;;
    esac
    fcpu=$( { time "$work/open-floor" "${addr%:*}" "${addr##*:}" "$rate" "$seconds" "$connections" "$batch_us" >"$out" 2>&1; } 2>&1 )
    fr=$(awk '/^answered/ {print $2}' "$out")
    rm -f "$out"
    fc=$(echo "$fcpu" | awk '{print $1 + $2}')
    g_us=$(calc "$gc / $gr * 1000000"); f_us=$(calc "$fc / $fr * 1000000"); w_us=$(calc "1000000 / $wrk_rate")
    printf 'open model %5d req/s, start batch %5s: gauntlet %d req / %.2f cpu-s = %.0f req/cpu-s (%.1f us/req), wrk closed loop %.0f req/cpu-s (%.1f us/req), ratio %.2f; dropped %s, errors %s, corrected p99 %s, send lateness %s\n' \
        "$rate" "$batch" "$gr" "$gc" "$(calc "$gr / $gc")" "$g_us" \
        "$wrk_rate" "$w_us" "$(calc "($gr / $gc) / $wrk_rate")" \
        "$dropped" "$errors" "$p99" "$late"
    printf '    timer floor (C open-floor, same rate, batch, connections): %.1f us/req; gauntlet / floor %.2f; gauntlet above the floor %.1f us/req = %.2f x wrk closed loop\n' \
        "$f_us" "$(calc "$g_us / $f_us")" "$(calc "$g_us - $f_us")" "$(calc "($g_us - $f_us) / $w_us")"
done
