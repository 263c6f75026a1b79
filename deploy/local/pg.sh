#!/usr/bin/env bash
# PostgreSQL from Debian's packages, in a cluster owned by the project (no system service).
# usage: pg.sh start|stop|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

pg_bin() {
  local d; d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$d" ]] && echo "$d"
}

ensure_postgres() {
  if [[ -z "$(pg_bin)" ]]; then
    log "installing PostgreSQL from Debian"
    apt_install postgresql
  fi
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_data_dir() {
  local dir="$STATE_DIR/pg-$PG_PORT"
  if [[ "$(id -u)" == 0 ]]; then
    mkdir -p "$dir" && chown postgres:postgres "$dir" && chmod 700 "$dir"
    # The state folder must be reachable by `postgres`; otherwise keep the cluster in /var/tmp.
    if ! runuser -u postgres -- test -w "$dir"; then dir="/var/tmp/kalo-pg-$PG_PORT"; mkdir -p "$dir"; chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
  else
    mkdir -p "$dir"
  fi
  echo "$dir"
}

PGDATA="$(pg_data_dir 2>/dev/null || echo "$STATE_DIR/pg-$PG_PORT")"

answers() { psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -Atc 'select 1'; }

start() {
  ensure_postgres
  PGDATA="$(pg_data_dir)"
  local bin; bin="$(pg_bin)"
  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    log "creating a PostgreSQL cluster in $PGDATA"
    as_owner "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if as_owner "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running (port $PG_PORT)"
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_owner "$bin/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGDATA -c max_connections=200 -c shared_buffers=256MB -c fsync=on -c synchronous_commit=on -c shared_preload_libraries=pg_stat_statements" >/dev/null
  fi
  wait_for "PostgreSQL on port $PG_PORT" 60 psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc 'select 1'
  local q="psql -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -Atc"
  [[ "$($q "select 1 from pg_roles where rolname='$PG_USER'")" == 1 ]] || $q "create role \"$PG_USER\" login superuser" >/dev/null
  [[ "$($q "select 1 from pg_database where datname='$PG_DB'")" == 1 ]] || $q "create database \"$PG_DB\" owner \"$PG_USER\"" >/dev/null
  wait_for "database $PG_DB" 30 answers
  log "PostgreSQL ready"
}

stop() {
  local bin; bin="$(pg_bin || true)"
  if [[ -n "$bin" && -f "$PGDATA/postmaster.pid" ]]; then
    log "stopping PostgreSQL (port $PG_PORT)"
    as_owner "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
  fi
}

status() {
  if answers >/dev/null 2>&1; then echo "postgres: up (127.0.0.1:$PG_PORT, database $PG_DB)"
  else echo "postgres: down"; return 1; fi
}

"${1:-status}"
