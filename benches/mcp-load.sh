#!/usr/bin/env bash
# Load test of the MCP endpoint on loopback: tools/call of devmesh_whoami (a cheap built-in
# tool) with an API key, for each protocol era and client count:
#   modern  protocol 2026-07-28: every request carries its _meta and headers, no session
#   legacy  protocol 2025-11-25: one session (initialize first), Mcp-Session-Id on each call
# CLIENTS "1 64" means one sequential client, then 64 concurrent ones (wrk connections,
# each sending its next call when the last is answered). Prints calls per second and the
# latency distribution (p50, p99) for each. SHAPES as in benches/lib.sh (default embedded).
# Needs wrk (apt-get install wrk). Everything it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CLIENTS=${CLIENTS:-"1 64"}
ERAS=${ERAS:-"modern legacy"}
SHAPES=${SHAPES:-embedded}
source benches/lib.sh

call_body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"devmesh_whoami","arguments":{}META}}'
modern_meta=',"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcp-load","version":"1"}}'

# A wrk script that POSTs one JSON-RPC message with the given headers.
wrk_script() {
  local body=$1; shift
  local file="$dir/request.lua"
  {
    echo 'wrk.method = "POST"'
    printf 'wrk.body = [[%s]]\n' "$body"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo 'wrk.headers["Accept"] = "application/json, text/event-stream"'
    for h in "$@"; do
      printf 'wrk.headers["%s"] = "%s"\n' "${h%%:*}" "${h#*: }"
    done
  } >"$file"
  echo "$file"
}

run_shape() {
  local shape=$1
  start_node "$shape"
  local key; key=$(register_org)
  for era in $ERAS; do
    local -a headers=("Authorization: Bearer $key")
    local body
    if [ "$era" = modern ]; then
      body=${call_body/META/$modern_meta}
      headers+=("MCP-Protocol-Version: 2026-07-28" "Mcp-Method: tools/call" "Mcp-Name: devmesh_whoami")
    else
      body=${call_body/META/}
      local session
      session=$(curl -fsS -D - -o /dev/null -X POST "$MCP/mcp" -H "authorization: Bearer $key" \
        -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
        -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-load","version":"1"}}}' \
        | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')
      headers+=("Mcp-Session-Id: $session" "MCP-Protocol-Version: 2025-11-25")
    fi
    local script; script=$(wrk_script "$body" "${headers[@]}")
    # One call by hand: it must be a result, not an error.
    local -a curl_headers=()
    for h in "${headers[@]}"; do curl_headers+=(-H "$h"); done
    curl -fsS -X POST "$MCP/mcp" "${curl_headers[@]}" -H 'content-type: application/json' \
      -H 'accept: application/json, text/event-stream' -d "$body" | grep -q '"structuredContent"' \
      || { echo "tools/call did not return a result"; exit 1; }
    for clients in $CLIENTS; do
      local threads=$(( clients < 2 ? 1 : 2 ))
      echo "== $shape, $era ($([ "$era" = modern ] && echo 2026-07-28 || echo 2025-11-25)): tools/call devmesh_whoami, $clients client(s), $DURATION"
      wrk -t"$threads" -c"$clients" -d3s -s "$script" "$MCP/mcp" >/dev/null
      wrk -t"$threads" -c"$clients" -d"$DURATION" --latency -s "$script" "$MCP/mcp" \
        | grep -E "Requests/sec|Latency |50%|90%|99%|requests in|Non-2xx"
    done
  done
  cleanup
}

for shape in $SHAPES; do
  run_shape "$shape"
done
