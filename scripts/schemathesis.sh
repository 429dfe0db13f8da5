#!/usr/bin/env bash
# schemathesis over the REST API: every check, against a fresh devmesh with two tenants
# (so that the object-level authorization check replays one tenant's ids as the other),
# with the configuration and hooks in tests/schemathesis/. Any failure fails the run.
# Reports are kept in target/schemathesis/. Extra arguments go to `st run`; ST_CONFIG names
# another configuration (say, a copy with `deterministic = false` and more examples, to
# explore beyond what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/test-tools.sh

source scripts/devmesh-under-test.sh
results="$(pwd)/${CARGO_TARGET_DIR:-target}/schemathesis"
rm -rf "$results" && mkdir -p "$results"
# The routes without credentials allow 60 requests a minute per address: lifted for the run.
DEVMESH_LOG_COPY="$results/devmesh.log"
start_devmesh api DEVMESH_RATE_LIMITS__ANONYMOUS__PER_MINUTE=1000000 DEVMESH_RATE_LIMITS__ANONYMOUS__BURST=1000000 DEVMESH_OUTBOUND__ALLOW_PUBLIC=false
addr=$DEVMESH_ADDR
work=$DEVMESH_WORK
api="http://$addr/api/v1"

post() { curl -fsS -X POST "$api$1" -H 'content-type: application/json' ${3:+-H "Authorization: Bearer $3"} -d "$2"; }
field() { "$DEVMESH_TEST_PYTHON" -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[k]
print(v)' "$@"; }

# Two tenants with some of everything, each with a key of its own for the run.
declare -A key protected
for org in acme beta; do
  admin=$(post /auth/register/organization "{\"organization_name\": \"${org^}\", \"organization_slug\": \"$org\",
    \"admin_email\": \"ops@$org.example.com\", \"admin_name\": \"Ops\", \"admin_password\": \"a long passphrase\"}" \
    | field api_key key)
  post /contexts '{"name": "notes"}' "$admin" >/dev/null
  post /contexts '{"name": "conversation", "token_budget": 100000, "items": [{"role": "user", "content": "hello"}]}' "$admin" >/dev/null
  post /users "{\"email\": \"dev@$org.example.com\", \"name\": \"Dev\", \"password\": \"another long passphrase\"}" "$admin" >/dev/null
  post /invitations "{\"email\": \"new@$org.example.com\"}" "$admin" >/dev/null
  post /api-keys '{"name": "agent", "key_type": "agent"}' "$admin" >/dev/null
  run=$(post /api-keys '{"name": "schemathesis", "key_type": "admin"}' "$admin")
  key[$org]=$(echo "$run" | field key)
  protected[$org]=$(echo "$run" | field api_key id)
done
cat >"$work/auth.json" <<JSON
{"auth": [
  {"name": "acme", "fixedHeaders": [{"name": "Authorization", "value": "Bearer ${key[acme]}"}]},
  {"name": "beta", "fixedHeaders": [{"name": "Authorization", "value": "Bearer ${key[beta]}"}]}
]}
JSON

echo "[schemathesis] $("$DEVMESH_SCHEMATHESIS" --version) against $api" >&2
status=0
(
  cd "$results"
  ST_WFC_AUTH="$work/auth.json" \
  PROTECTED_KEY_IDS="${protected[acme]},${protected[beta]}" \
  PYTHONPATH="$OLDPWD/tests/schemathesis" \
    "$DEVMESH_SCHEMATHESIS" --config-file "${ST_CONFIG:-$OLDPWD/tests/schemathesis/schemathesis.toml}" \
      run "$api/openapi.json" --url "http://$addr" --no-color \
      --report junit,ndjson --report-dir "$results" "$@" >"$results/run.log" 2>&1
) || status=$?
if [ $status -eq 0 ]; then
  grep -E "^Test cases:|generated" "$results/run.log" >&2 || true
  echo "[schemathesis] no failures" >&2
else
  sed -n '/=== FAILURES ===/,$p' "$results/run.log" >&2
  [ -s "$results/run.log" ] && tail -5 "$results/run.log" >&2
fi
exit $status
