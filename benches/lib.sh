# Shared by the load tools: starts a release devmesh in one deployment shape on loopback
# ports, registers an organization, and removes every process, directory, database and
# Redis key it made. Source it; then `start_node SHAPE`, `register_org`, `cleanup`.
#   embedded   SQLite in a temporary data directory, in-process counters
#   scale-out  a fresh PostgreSQL database and a Redis key prefix (TEST_POSTGRES_URL, TEST_REDIS_URL)
# Rate limits stay on, set high enough not to refuse the load, so that their cost is in
# the numbers. Needs wrk (apt-get install wrk).

PG=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
REDIS=${TEST_REDIS_URL:-redis://127.0.0.1:6379}

if [ "${NEEDS_WRK:-1}" = 1 ]; then
  command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
fi
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

# Starts a node; sets API (http://host:port of the REST API) and MCP (of the MCP listener).
start_node() {
  local shape=$1
  dir=$(mktemp -d)
  local api_port mcp_port
  api_port=$(free_port); mcp_port=$(free_port)
  local -a env=(
    DEVMESH_API__LISTEN="127.0.0.1:$api_port" DEVMESH_MCP__LISTEN="127.0.0.1:$mcp_port" DEVMESH_LOG__LEVEL=warn
    DEVMESH_RATE_LIMITS__KEY__PER_MINUTE=60000000 DEVMESH_RATE_LIMITS__KEY__BURST=60000000
    DEVMESH_RATE_LIMITS__ORGANIZATION__PER_MINUTE=60000000 DEVMESH_RATE_LIMITS__ORGANIZATION__BURST=60000000
    ${NODE_ENV:-}
  )
  if [ "$shape" = scale-out ]; then
    db="devmesh_bench_$RANDOM$RANDOM"
    prefix="devmesh-bench-$RANDOM$RANDOM:"
    psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
    env+=(DEVMESH_DATABASE__URL="$PG/$db" DEVMESH_REDIS__URL="$REDIS" DEVMESH_REDIS__KEY_PREFIX="$prefix")
  fi
  env "${env[@]}" "$BIN" --data-dir "$dir/data" serve 2>"${BENCH_LOG:-$dir/log}" &
  pid=$!
  API="http://127.0.0.1:$api_port"
  MCP="http://127.0.0.1:$mcp_port"
  until curl -fsS -o /dev/null "$API/ready" 2>/dev/null; do sleep 0.05; done
}

# Registers an organization; prints its admin API key.
register_org() {
  curl -fsS -X POST "$API/api/v1/auth/register/organization" -H 'content-type: application/json' \
    -d '{"organization_name":"Bench","organization_slug":"bench","admin_email":"bench@example.com","admin_name":"Bench","admin_password":"benchmark password"}' \
    | json "['api_key']['key']"
}
