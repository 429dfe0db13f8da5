#!/usr/bin/env bash
# Load test of the REST API on loopback: an authenticated GET /api/v1/contexts/{id} with an
# API key (a context of 5 items), CONNECTIONS connections for DURATION, on both shapes:
#   embedded   SQLite in a temporary data directory, in-process counters
#   scale-out  a fresh PostgreSQL database and a Redis key prefix (TEST_POSTGRES_URL, TEST_REDIS_URL)
# Prints wrk's requests per second and latency distribution (p50, p99). Rate limits stay on,
# set high enough not to refuse the load, so that their cost is in the numbers.
# Needs wrk (apt-get install wrk). Every process and database it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SHAPES=${SHAPES:-"embedded scale-out"}
PG=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
REDIS=${TEST_REDIS_URL:-redis://127.0.0.1:6379}

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
cargo build --release --quiet
BIN=target/release/devmesh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

pid=""; dir=""; db=""; prefix=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "$dir" ] && rm -rf "$dir"
  [ -n "$db" ] && psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  if [ -n "$prefix" ]; then
    redis-cli -u "$REDIS" --scan --pattern "${prefix}*" | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
  fi
  pid=""; dir=""; db=""; prefix=""
}
trap cleanup EXIT

run_shape() {
  local shape=$1
  dir=$(mktemp -d)
  local port; port=$(free_port)
  local -a env=(
    DEVMESH_API__LISTEN="127.0.0.1:$port" DEVMESH_MCP__LISTEN="127.0.0.1:0" DEVMESH_LOG__LEVEL=warn
    DEVMESH_RATE_LIMITS__KEY__PER_MINUTE=60000000 DEVMESH_RATE_LIMITS__KEY__BURST=60000000
    DEVMESH_RATE_LIMITS__ORGANIZATION__PER_MINUTE=60000000 DEVMESH_RATE_LIMITS__ORGANIZATION__BURST=60000000
  )
  if [ "$shape" = scale-out ]; then
    db="devmesh_bench_$RANDOM$RANDOM"
    prefix="devmesh-bench-$RANDOM$RANDOM:"
    psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
    env+=(DEVMESH_DATABASE__URL="$PG/$db" DEVMESH_REDIS__URL="$REDIS" DEVMESH_REDIS__KEY_PREFIX="$prefix")
  fi
  env "${env[@]}" "$BIN" --data-dir "$dir/data" serve 2>"${BENCH_LOG:-$dir/log}" &
  pid=$!
  local base="http://127.0.0.1:$port"
  until curl -fsS -o /dev/null "$base/ready" 2>/dev/null; do sleep 0.05; done

  local key ctx
  key=$(curl -fsS -X POST "$base/api/v1/auth/register/organization" -H 'content-type: application/json' \
    -d '{"organization_name":"Bench","organization_slug":"bench","admin_email":"bench@example.com","admin_name":"Bench","admin_password":"benchmark password"}' \
    | json "['api_key']['key']")
  ctx=$(curl -fsS -X POST "$base/api/v1/contexts" -H "authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"name":"bench","agent_id":"planner","items":[{"role":"system","content":"You are a DevOps agent."},{"role":"user","content":"Why did the deploy fail?"},{"role":"assistant","content":"The health check timed out after 30 s."},{"role":"user","content":"Roll back?"},{"role":"assistant","content":"Rolled back to v41."}]}' \
    | json "['id']")
  local url="$base/api/v1/contexts/$ctx"
  curl -fsS -o /dev/null -H "authorization: Bearer $key" "$url"

  echo "== $shape: GET /api/v1/contexts/{id}, $CONNECTIONS connections, $DURATION"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -H "Authorization: Bearer $key" "$url" >/dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $key" "$url" \
    | grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx"
  cleanup
}

for shape in $SHAPES; do
  run_shape "$shape"
done
