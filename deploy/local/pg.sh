#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests, local runs and benchmarks.
#
#   deploy/local/pg.sh start [DIR]   initialise and start a cluster in DIR (default: a new temp dir),
#                                    on a free 127.0.0.1 port; prints its URL on stdout
#   deploy/local/pg.sh stop DIR      stop it and delete DIR
#
# Installs PostgreSQL with apt when its binaries are missing. initdb refuses to
# run as root, so as root the cluster belongs to the `postgres` user.
set -euo pipefail

PG_VERSION=${PG_VERSION:-15}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_VERSION/bin}

log() { echo "pg.sh: $*" >&2; }

ensure_installed() {
  if [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]]; then return; fi
  log "PostgreSQL $PG_VERSION not found at $PG_BIN; installing with apt"
  if [[ $(id -u) -ne 0 ]]; then log "need root to apt-get install postgresql-$PG_VERSION"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "postgresql-$PG_VERSION" postgresql-contrib >&2
  # The package starts a system cluster on 5432; we never use it.
  pg_ctlcluster "$PG_VERSION" main stop >/dev/null 2>&1 || true
}

# Runs a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
    || echo $((20000 + RANDOM % 30000))
}

start() {
  ensure_installed
  local dir=${1:-$(mktemp -d /tmp/mileage-pg.XXXXXX)}
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; chmod 700 "$dir"; fi
  as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { log "initdb failed:"; cat "$dir/initdb.log" >&2; exit 1; }
  local attempt port
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=${PG_FSYNC:-on}" start >/dev/null 2>&1; then
      echo "postgres://postgres@127.0.0.1:$port/postgres" | as_owner tee "$dir/url" >/dev/null
      cat "$dir/url"
      return
    fi
    log "start on port $port failed (attempt $attempt); retrying"
  done
  log "could not start PostgreSQL; server log:"; cat "$dir/server.log" >&2; exit 1
}

stop() {
  local dir=${1:?usage: pg.sh stop DIR}
  if [[ -d "$dir/data" ]]; then
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
