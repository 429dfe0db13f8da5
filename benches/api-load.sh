#!/usr/bin/env bash
# Load test of the REST API on loopback: an authenticated GET /api/v1/contexts/{id} with an
# API key (a context of 5 items), CONNECTIONS connections for DURATION, on both shapes
# (see benches/lib.sh). Prints wrk's requests per second and latency distribution (p50,
# p99). Needs wrk (apt-get install wrk). Everything it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SHAPES=${SHAPES:-"embedded scale-out"}
source benches/lib.sh

run_shape() {
  local shape=$1
  start_node "$shape"
  local base=$API
  local key ctx
  key=$(register_org)
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
