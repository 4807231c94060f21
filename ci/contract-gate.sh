#!/usr/bin/env bash
# The contract merge gate, as CI runs it (ci/github-actions.yml), runnable locally:
#
#   1. the consumer contract tests (they fail when a committed pact in contracts/pacts/
#      is stale; GAUNTLET_UPDATE_PACTS=1 rewrites them),
#   2. provider verification of every pact (JUnit XML in runs/contracts/junit.xml),
#   3. can-i-deploy for every service, from the verification matrix (notifications
#      too: it takes part only as the consumer of orders' message pact).
#
#   ci/contract-gate.sh [--profile debug|release]
#
# Exits non-zero on the first failing step: 1 a contract failed, 2 bad input,
# 3 the harness could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
if [ "${1:-}" = "--profile" ]; then profile=${2:?--profile needs debug or release}; fi
release_flag=()
[ "$profile" = release ] && release_flag=(--release)

log() { printf '\n==> %s\n' "$*"; }

log "consumer contract tests (orders, gateway, notifications)"
cargo test "${release_flag[@]}" -p shop-orders -p shop-gateway -p shop-notifications --test pact_consumer

log "building gauntlet and the providers ($profile)"
cargo build "${release_flag[@]}" -p gauntlet -p shop-users -p shop-catalog -p shop-orders -p shop-payments --bins
gauntlet="${CARGO_TARGET_DIR:-target}/$profile/gauntlet"

log "provider verification"
start=$(date +%s%N)
"$gauntlet" contracts verify --profile "$profile" --no-build --junit runs/contracts/junit.xml
echo "verification wall time: $(( ($(date +%s%N) - start) / 1000000 )) ms"

log "can-i-deploy"
for service in gateway users catalog orders payments notifications; do
  "$gauntlet" contracts can-i-deploy --service "$service"
done
