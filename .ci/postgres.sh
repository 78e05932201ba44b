#!/usr/bin/env bash
# Installs (when missing), initialises and starts a throw-away PostgreSQL cluster for the test suite, then prints
# the SQLAlchemy URL of its test database on stdout. Idempotent: a running cluster is reused, an installed server
# is not reinstalled. No systemd: the cluster is started with pg_ctl.
#   eval "$(bash .ci/postgres.sh)"   -> exports MBC_CDS_TEST_DATABASE_URL
set -euo pipefail
port="${MBC_CDS_CI_PG_PORT:-55432}"
datadir="${MBC_CDS_CI_PG_DIR:-/var/tmp/mbc-cds-pg}"
db=test
role=mbc

log() { echo "postgres.sh: $*" >&2; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/postgres" ]; then
  log "installing the PostgreSQL server from Debian's packages"
  if [ "$(id -u)" -ne 0 ]; then log "not root: cannot apt-get install postgresql"; exit 1; fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi

# postgres refuses to run as root: run the cluster as the 'postgres' system user when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if ! "$pgbin/pg_isready" -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
  if [ ! -f "$datadir/PG_VERSION" ]; then
    log "initialising a cluster in $datadir (trust authentication on loopback only)"
    mkdir -p "$datadir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$datadir"
    chmod 700 "$datadir"
    as_owner "$pgbin/initdb" -D "$datadir" -U postgres -A trust -E UTF8 --no-locale >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$port"
  as_owner "$pgbin/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
fi

for _ in $(seq 1 30); do "$pgbin/pg_isready" -h 127.0.0.1 -p "$port" -q && break; sleep 1; done
"$pgbin/pg_isready" -h 127.0.0.1 -p "$port" -q || { log "PostgreSQL did not start: see $datadir/server.log"; exit 1; }

psql_() { "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
[ "$(psql_ -c "select 1 from pg_roles where rolname='$role'")" = 1 ] || psql_ -c "create role $role login createdb"
[ "$(psql_ -c "select 1 from pg_database where datname='$db'")" = 1 ] || psql_ -c "create database $db owner $role"

echo "export MBC_CDS_TEST_DATABASE_URL=postgresql+psycopg://$role@127.0.0.1:$port/$db"
