#!/usr/bin/env bash
# Load test of MCP over WebSocket on loopback, with the load tool benches/ws_load.rs:
#   throughput  tools/call of devmesh_whoami (protocol 2026-07-28) on ONE connection with
#               INFLIGHT requests in flight, for each of FRAMES (text, zstd, gzip binary
#               frames): calls per second, p50 and p99.
#   idle        IDLE_CONNECTIONS authenticated connections, each with an initialized
#               session, held open: devmesh's resident memory before and while they are
#               held, and the difference per connection.
# SHAPES as in benches/lib.sh (default embedded). Everything it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
INFLIGHT=${INFLIGHT:-100}
FRAMES=${FRAMES:-"text zstd gzip"}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SHAPES=${SHAPES:-embedded}
NEEDS_WRK=0
NODE_ENV="DEVMESH_MCP__WS__MAX_CONNECTIONS=$((IDLE_CONNECTIONS + 100)) DEVMESH_MCP__WS__MAX_CONNECTIONS_PER_KEY=$((IDLE_CONNECTIONS + 100))"
source benches/lib.sh
cargo build --release --quiet --bench ws_load
TOOL=$(ls -t target/release/deps/ws_load-* | grep -v '\.d$' | head -1)

rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

run_shape() {
  local shape=$1
  start_node "$shape"
  local key; key=$(register_org)
  local url="ws://${MCP#http://}/ws"
  echo "== $shape"
  for frames in $FRAMES; do
    "$TOOL" throughput "$url" "$key" 3 "$INFLIGHT" "$frames" >/dev/null # warm-up
    "$TOOL" throughput "$url" "$key" "$DURATION" "$INFLIGHT" "$frames"
  done
  # Idle connections: memory held per connection (IDLE_CONNECTIONS=0 skips it).
  if [ "$IDLE_CONNECTIONS" -eq 0 ]; then cleanup; return; fi
  sleep 1
  local before; before=$(rss_kib "$pid")
  local fifo="$dir/idle.out"
  "$TOOL" idle "$url" "$key" "$IDLE_CONNECTIONS" 30 >"$fifo" &
  local tool_pid=$!
  until grep -q '^open' "$fifo" 2>/dev/null; do sleep 0.5; kill -0 "$tool_pid" || { echo "the load tool failed"; exit 1; }; done
  sleep 3
  local held; held=$(rss_kib "$pid")
  wait "$tool_pid"
  python3 -c "
import json
before, held, n = $before, $held, $IDLE_CONNECTIONS
print(json.dumps({'idle_connections': n, 'rss_before_kib': before, 'rss_held_kib': held,
                  'kib_per_connection': round((held - before) / n, 2)}))"
  cleanup
}

for shape in $SHAPES; do run_shape "$shape"; done
