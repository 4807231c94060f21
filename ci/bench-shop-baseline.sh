#!/usr/bin/env bash
# Baseline throughput of the sample shop through the gateway, measured with wrk
# (Debian package `wrk`) against a running `gauntlet up` (release build):
#   GET /api/v1/products             direct to the gateway and through its ingress proxy
#   POST /api/v1/orders (place order) through the ingress proxy
# Usage: ci/bench-shop-baseline.sh [DURATION] [CONNECTIONS]
# Prints wrk's summary for each, and the direct/proxied ratio for reads.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
conns=${2:-32}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 2; }

runs=$(mktemp -d)
cargo build --release -q -p gauntlet --bins
cargo build --release -q --bins
./target/release/gauntlet up --profile release --runs "$runs" --proxy-listen 127.0.0.1:0 >"$runs/up.out" 2>"$runs/up.err" &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true; rm -rf "$runs"' EXIT
for _ in $(seq 1 300); do grep -q "cluster is up" "$runs/up.out" 2>/dev/null && break; sleep 0.1; done
grep -q "cluster is up" "$runs/up.out" || { cat "$runs/up.err"; exit 3; }
ingress=$(awk '/^ingress:/ {print $2}' "$runs/up.out" | tr -d ',')
direct=http://127.0.0.1:7000

curl -sf -X POST "$ingress/api/v1/users" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","name":"Bench","password":"correct horse"}' >/dev/null
token=$(curl -sf -X POST "$ingress/api/v1/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"correct horse"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

rps() { awk '/Requests\/sec/ {print $2}'; }
echo "== GET /api/v1/products?limit=20, direct to the gateway ($conns connections, $duration)"
d=$(wrk -t2 -c"$conns" -d"$duration" --latency "$direct/api/v1/products?limit=20" | tee /dev/stderr | rps)
echo "== GET /api/v1/products?limit=20, through the ingress proxy"
p=$(wrk -t2 -c"$conns" -d"$duration" --latency "$ingress/api/v1/products?limit=20" | tee /dev/stderr | rps)
echo "reads: direct $d req/s, proxied $p req/s, proxied/direct = $(awk -v a="$p" -v b="$d" 'BEGIN {printf "%.2f", a/b}')"

lua="$runs/order.lua"
cat >"$lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
math.randomseed(7)
request = function()
  local body = string.format('{"items":[{"product_id":%d,"quantity":1}]}', math.random(1, 100))
  return wrk.format(nil, "/api/v1/orders", nil, body)
end
LUA
echo "== POST /api/v1/orders (place order: reserve, charge, commit), through the ingress proxy"
wrk -t2 -c"$conns" -d"$duration" --latency -s "$lua" "$ingress" | tee /dev/stderr | rps | sed 's/^/place-order req\/s: /'
