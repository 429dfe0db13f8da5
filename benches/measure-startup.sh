#!/usr/bin/env bash
# Measures what the platform issue asks for, on this machine:
#   - clean build time of the release binary (skipped with SKIP_BUILD=1; uses its own target dir)
#   - release binary size
#   - time from process start to a ready /health, embedded shape (median of RUNS starts)
#   - idle resident memory after start-up
# Only loopback addresses are used; every process it starts is stopped before it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-10}
TARGET_DIR=${TARGET_DIR:-target/measure}
BIN="$TARGET_DIR/release/devmesh"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  rm -rf "$TARGET_DIR"
  start=$(date +%s.%N)
  CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "clean release build: %.0f s\n", e - s }'
fi
[ -x "$BIN" ] || { echo "no release binary at $BIN (run without SKIP_BUILD=1)"; exit 1; }
awk -v b="$(stat -c %s "$BIN")" 'BEGIN { printf "release binary: %d bytes (%.1f MiB)\n", b, b / 1048576 }'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

times=()
for i in $(seq 1 "$RUNS"); do
  dir=$(mktemp -d)
  port=$(free_port)
  start=$(date +%s%N)
  DEVMESH_API__LISTEN="127.0.0.1:$port" DEVMESH_MCP__LISTEN="127.0.0.1:0" DEVMESH_LOG__LEVEL=warn \
    "$BIN" --data-dir "$dir/data" serve 2>/dev/null &
  pid=$!
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; do sleep 0.002; done
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
  if [ "$i" = "$RUNS" ]; then
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null; do sleep 0.01; done
    sleep 5
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "idle resident memory (embedded shape, all roles, 5 s after ready): ${rss} KiB"
  fi
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "start to ready /health over $RUNS starts: median $(( sorted[RUNS / 2] / 1000 )).$(( sorted[RUNS / 2] % 1000 / 100 )) ms, min $(( sorted[0] / 1000 )) ms, max $(( sorted[RUNS - 1] / 1000 )) ms"
