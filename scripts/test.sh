#!/usr/bin/env bash
# The whole test suite, from a fresh machine of the project's kind:
# starts PostgreSQL and Redis when they are not answering, builds and installs pgvector
# when it is missing, drops test databases left by earlier runs, then runs every test
# (unit and black-box, SQLite, PostgreSQL and Redis) with cargo-nextest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-services.sh

# Test databases of interrupted runs.
psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
  "select 'DROP DATABASE IF EXISTS ' || quote_ident(datname) || ' WITH (FORCE);' from pg_database where datname like 'devmesh_test_%'" \
  | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

export TEST_POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379}
exec cargo nextest run --workspace --no-fail-fast "$@"
