#!/usr/bin/env bash
# The embedded fault proxy's cost, measured side by side in one run: wrk against a
# trivial local endpoint directly, through a `gauntlet proxy` slot (no toxic), and
# through the floor proxy `ci/proxy-floor.c` (one C thread, epoll, read and write,
# nothing else: what the kernel alone charges for two more TCP hops).
#
# Prints, per round and overall, the requests wrk completed, the CPU the target and
# each proxy used (user + system, read from /proc for each process), each proxy's CPU
# per proxied request, and the ratio of the whole server side's CPU per request through
# our proxy (target + proxy) to direct (target alone). Toxiproxy 2.12, measured with
# this method on this kind of machine, used 21 us per proxied request; the goal is at
# most half that, which the floor line shows whether this machine's kernel allows.
#
#   ci/bench-proxy.sh [CONNECTIONS] [SECONDS] [ROUNDS]
#
# Needs wrk, curl and a C compiler (Debian packages); BENCH_NO_BUILD=1 uses the release
# binaries already built.
set -euo pipefail

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
source "$(dirname "$0")/bench-common.sh"

work=$(mktemp -d)
build_floor proxy-floor "$work"
"$target" 0 >"$work/target.log" 2>&1 &
server=$!
"$gauntlet" proxy --listen 127.0.0.1:0 --seed 1 >"$work/proxy.log" 2>&1 &
proxy=$!
trap 'kill "$server" "$proxy" ${floor:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
    grep -q "listening on" "$work/target.log" && grep -q "Toxiproxy API on" "$work/proxy.log" && break
    sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$work/target.log")
api=$(sed -n 's/.*Toxiproxy API on \([^ ]*\) .*/\1/p' "$work/proxy.log")
[ -n "$addr" ] && [ -n "$api" ] || { echo "bench-proxy: the target or the proxy did not start" >&2; exit 3; }
case "$api" in http://*) ;; *) api="http://$api" ;; esac
created=$(curl -sf -X POST "$api/proxies" -H 'content-type: application/json' \
    -d "{\"name\":\"bench\",\"listen\":\"127.0.0.1:0\",\"upstream\":\"$addr\",\"enabled\":true}")
listen=$(echo "$created" | sed -n 's/.*"listen":"\([^"]*\)".*/\1/p')
[ -n "$listen" ] || { echo "bench-proxy: could not create the proxy: $created" >&2; exit 3; }
"$work/proxy-floor" 0 "${addr%:*}" "${addr##*:}" >"$work/floor.log" 2>&1 &
floor=$!
for _ in $(seq 1 50); do
    grep -q "listening on" "$work/floor.log" && break
    sleep 0.1
done
floor_addr=$(sed -n 's/^listening on //p' "$work/floor.log")
[ -n "$floor_addr" ] || { echo "bench-proxy: the floor proxy did not start" >&2; exit 3; }
echo "target http://$addr/, proxy slot http://$listen/, floor proxy http://$floor_addr/, $connections connections, ${seconds}s per run, $rounds rounds"

# CPU seconds a process has used so far (utime + stime from /proc/PID/stat).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# Runs wrk at URL; prints "REQUESTS TARGET_CPU PROXY_CPU" (PROXY_CPU of process PID).
measure() {
    local t0 p0 out
    t0=$(cpu_of "$server"); p0=$(cpu_of "$2")
    out=$(wrk -t1 -c"$connections" -d"${seconds}s" "$1")
    echo "$(echo "$out" | awk '/requests in/ {print $1}') $(calc "$(cpu_of "$server") - $t0") $(calc "$(cpu_of "$2") - $p0")"
}

sum_dr=0; sum_dt=0; sum_pr=0; sum_pt=0; sum_pp=0; sum_fr=0; sum_fp=0
for round in $(seq 1 "$rounds"); do
    read -r dr dt _ < <(measure "http://$addr/" "$proxy")
    read -r pr pt pp < <(measure "http://$listen/" "$proxy")
    read -r fr _ fp < <(measure "http://$floor_addr/" "$floor")
    printf 'round %d: direct %d req, target %.2f cpu-s (%.1f us/req); proxied %d req, target %.2f + proxy %.2f cpu-s, proxy %.1f us/req; floor proxy %.1f us/req; server side through the proxy / direct %.2f\n' \
        "$round" "$dr" "$dt" "$(calc "$dt / $dr * 1000000")" "$pr" "$pt" "$pp" \
        "$(calc "$pp / $pr * 1000000")" "$(calc "$fp / $fr * 1000000")" "$(calc "(($pt + $pp) / $pr) / ($dt / $dr)")"
    sum_dr=$((sum_dr + dr)); sum_pr=$((sum_pr + pr)); sum_fr=$((sum_fr + fr))
    sum_dt=$(calc "$sum_dt + $dt"); sum_pt=$(calc "$sum_pt + $pt"); sum_pp=$(calc "$sum_pp + $pp"); sum_fp=$(calc "$sum_fp + $fp")
done
proxy_us=$(calc "$sum_pp / $sum_pr * 1000000")
floor_us=$(calc "$sum_fp / $sum_fr * 1000000")
printf 'overall: floor proxy (C, one thread, read/write) %.1f us of CPU per proxied request; ours / floor %.2f\n' \
    "$floor_us" "$(calc "$proxy_us / $floor_us")"
printf 'overall: proxy %.1f us of CPU per proxied request (Toxiproxy 2.12: 21 us; goal <= 10.5 us: %s); target %.1f us/req direct; server side through the proxy / direct %.2f; throughput proxied / direct %.2f\n' \
    "$proxy_us" "$(awk "BEGIN { print ($proxy_us <= 10.5) ? \"met\" : \"NOT met\" }")" \
    "$(calc "$sum_dt / $sum_dr * 1000000")" "$(calc "(($sum_pt + $sum_pp) / $sum_pr) / ($sum_dt / $sum_dr)")" \
    "$(calc "$sum_pr / $sum_dr")"
