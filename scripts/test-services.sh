#!/usr/bin/env bash
# Makes sure what the test suite needs is running on this machine:
# PostgreSQL 15 on 127.0.0.1:5432 with the pgvector extension available, and Redis 7 on 127.0.0.1:6379.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail

log() { echo "[test-services] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PG_HOST=${PGHOST:-127.0.0.1}
PG_PORT=${PGPORT:-5432}
PG_USER=${PGUSER:-postgres}

start_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then return; fi
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  for _ in $(seq 1 60); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return; sleep 1; done
  log "PostgreSQL did not become ready"; exit 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 1; done
  log "Redis did not become ready"; exit 1
}

pgvector_available() {
  [ "$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc \
      "select count(*) from pg_available_extensions where name = 'vector'")" = 1 ]
}

# The URI of the Debian archive in this machine's apt sources (not its security archive).
# Either form of sources may be missing (a grep that finds no file or no line fails, and
# so would the pipeline under pipefail): only an empty answer means there is none.
debian_archive() {
  {
    grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
    grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' || true
  } | { grep -v -- '-security' || true; } | sed -n 1p
}

install_pgvector() {
  pgvector_available && return
  log "building pgvector from Debian's source package"
  local pg_major src
  pg_major=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc "show server_version_num" | cut -c1-2)
  # Source packages from the Debian archive this machine already uses, whatever mirror
  # that is: the first archive URI of its apt sources (deb822 or one-line form).
  local archive
  archive=$(debian_archive)
  [ -n "$archive" ] || { log "no Debian archive in the apt sources"; exit 1; }
  as_root rm -f /etc/apt/sources.list.d/devmesh-trixie-src.list
  echo "deb-src $archive trixie main" | as_root tee /etc/apt/sources.list.d/devmesh-pgvector-src.list >/dev/null
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-server-dev-${pg_major}" make gcc dpkg-dev >/dev/null
  src=$(mktemp -d)
  (cd "$src" && apt-get source --download-only pgvector >/dev/null && dpkg-source -x --no-check ./*.dsc pgvector >/dev/null)
  make -s -C "$src/pgvector" PG_CONFIG="/usr/lib/postgresql/${pg_major}/bin/pg_config" >/dev/null
  as_root make -s -C "$src/pgvector" PG_CONFIG="/usr/lib/postgresql/${pg_major}/bin/pg_config" install >/dev/null
  rm -rf "$src"
  # installing the server-dev package may upgrade and restart the server
  start_postgres
  pgvector_available || { log "pgvector is still not available"; exit 1; }
}

# The TLS tests connect with sslmode=require: make sure the server offers TLS.
ensure_postgres_tls() {
  [ "$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc "show ssl")" = on ] && return
  local cert=/etc/ssl/certs/ssl-cert-snakeoil.pem key=/etc/ssl/private/ssl-cert-snakeoil.key
  if [ ! -f "$cert" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ssl-cert >/dev/null
    as_root make-ssl-cert generate-default-snakeoil
  fi
  log "turning on TLS in PostgreSQL"
  psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -q \
    -c "ALTER SYSTEM SET ssl_cert_file = '$cert'" -c "ALTER SYSTEM SET ssl_key_file = '$key'" \
    -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
}

start_postgres
start_redis
install_pgvector
ensure_postgres_tls
log "PostgreSQL (with pgvector) and Redis are ready"
