#!/usr/bin/env bash
# End-to-end throughput and lag of the shop's event-driven half on this machine: a
# checkout-only load on services/cluster-events.toml (release build, needs nats-server),
# then, from the run's databases, for every order paid:
#   lag        = the notification row's created_ms - the ORDER_PAID outbox row's created_ms
#                (the commit that paid the order; through the relay, the broker and
#                notifications' transaction)
#   events/s   = notifications written / (last notification - first order paid)
# Usage: ci/bench-events.sh [RATE] [SECONDS]   (checkouts per second, default 100 for 20 s)
# The run itself is a scenario with events_delivered, so a lost or doubled event fails it.
set -euo pipefail
rate=${1:-100}
seconds=${2:-20}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v nats-server >/dev/null || { echo "bench: nats-server is missing: apt-get install nats-server" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "bench: sqlite3 is missing: apt-get install sqlite3" >&2; exit 2; }
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p gauntlet --bin gauntlet
    cargo build --release -q -p shop-users -p shop-catalog -p shop-payments -p shop-orders -p shop-gateway -p shop-notifications
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/checkouts.toml" <<TOML
[vars]
password = "correct horse battery"
[setup]
users = 16
[[setup.step]]
name = "register"
method = "POST"
path = "/api/v1/users"
body = { email = "vu{{vu}}@example.com", name = "Virtual user {{vu}}", password = "{{password}}" }
[[setup.step]]
name = "login"
method = "POST"
path = "/api/v1/login"
body = { email = "vu{{vu}}@example.com", password = "{{password}}" }
capture = { token = "/token" }
[[flow]]
name = "checkout"
[[flow.step]]
name = "place_order"
method = "POST"
path = "/api/v1/orders"
headers = { authorization = "Bearer {{token}}", idempotency-key = "bench-{{iteration}}" }
body = { items = [{ product_id = "{{uniform 1 100}}", quantity = 1 }] }
record = "place_order"
TOML
cat >"$work/bench-events.toml" <<TOML
name = "bench-events"
description = "Hypothesis: the event-driven half keeps up with $rate checkouts/s (a benchmark)."
seed = 1
invariants = ["no_lost_orders", "orders_terminate", "events_delivered"]
[cluster]
file = "$root/services/cluster-events.toml"
env = { catalog = { SHOP_CATALOG_SEED_STOCK = "1000000" } }
[load]
workload = "checkouts.toml"
schedule = { mode = "constant", rate = $rate, duration = "${seconds}s" }
[[slo]]
threshold = "availability >= 99%"
[recovery]
settle = "120s"
TOML

echo "== $rate checkouts/s for ${seconds}s on the events cluster (release)"
status=0
"$root/target/release/gauntlet" run --profile release --runs "$work/runs" "$work/bench-events.toml" >"$work/run.out" 2>&1 || status=$?
grep -E "PASSED|FAILED|^load:|events_delivered|orders at the end" "$work/run.out" || true
[ "$status" = 0 ] || { echo "bench: the run failed (exit $status); its output:" >&2; cat "$work/run.out" >&2; exit "$status"; }
data=$(ls -d "$work"/runs/*/data | head -1)

sqlite3 -batch "$data/notifications/notifications.db" <<SQL
ATTACH '$data/orders/orders.db' AS o;
CREATE TEMP TABLE lag AS
  SELECT n.created_ms - x.created_ms AS ms, x.created_ms AS paid_ms, n.created_ms AS notified_ms
  FROM notifications n JOIN o.outbox x ON x.event_id = n.event_id
  WHERE n.kind = 'ORDER_PAID';
SELECT printf('paid orders notified: %d', count(*)) FROM lag;
SELECT printf('end to end: %.0f events/s (paid order -> notification row, over %.1f s)',
              count(*) * 1000.0 / max(max(notified_ms) - min(paid_ms), 1), (max(notified_ms) - min(paid_ms)) / 1000.0)
  FROM lag;
SELECT printf('lag p50 %d ms, p95 %d ms, p99 %d ms, max %d ms',
  (SELECT ms FROM lag ORDER BY ms LIMIT 1 OFFSET (SELECT count(*) * 50 / 100 FROM lag)),
  (SELECT ms FROM lag ORDER BY ms LIMIT 1 OFFSET (SELECT count(*) * 95 / 100 FROM lag)),
  (SELECT ms FROM lag ORDER BY ms LIMIT 1 OFFSET (SELECT count(*) * 99 / 100 FROM lag)),
  (SELECT max(ms) FROM lag));
SQL
