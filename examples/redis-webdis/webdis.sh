#!/bin/sh
# webdis reads its Redis address from a JSON file, not a flag: write that file from the
# proxy slot Gauntlet gives this node (STORE_URL=redis://127.0.0.1:PORT), then run it.
# Arguments: the port to listen on, the node's data folder.
set -eu
port="$1"
dir="$2"
upstream="${STORE_URL%%,*}"
upstream="${upstream#*://}"
cat >"$dir/webdis.json" <<JSON
{
  "redis_host": "${upstream%:*}",
  "redis_port": ${upstream##*:},
  "http_host": "127.0.0.1",
  "http_port": $port,
  "threads": 2,
  "pool_size": 8,
  "daemonize": false,
  "database": 0,
  "verbosity": 3,
  "logfile": "$dir/webdis.log"
}
JSON
exec webdis "$dir/webdis.json"
