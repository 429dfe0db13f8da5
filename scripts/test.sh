#!/usr/bin/env bash
# The whole test suite, from a fresh machine of the project's kind:
# starts PostgreSQL and Redis when they are not answering, builds and installs pgvector
# when it is missing, installs the test tools (Node.js 22 with the MCP conformance suite,
# the MCP Python SDK, schemathesis), drops test databases left by earlier runs, then runs
# every test (unit and black-box, SQLite, PostgreSQL and Redis) with cargo-nextest, the
# official MCP conformance suite against a running devmesh, and schemathesis over the REST
# API.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-services.sh

# Node.js 22 with the MCP conformance suite, and the MCP Python SDK.
source scripts/test-tools.sh

# Test databases of interrupted runs.
psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
  "select 'DROP DATABASE IF EXISTS ' || quote_ident(datname) || ' WITH (FORCE);' from pg_database where datname like 'devmesh_test_%'" \
  | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

export TEST_POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379}
status=0
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
# The official MCP conformance suite, both protocol eras, and schemathesis over the REST
# API (skipped when only some tests were asked for by name).
if [ $# -eq 0 ]; then
  bash scripts/conformance.sh || status=1
  bash scripts/schemathesis.sh || status=1
fi
exit $status
