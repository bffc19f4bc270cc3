#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests and CI.
#
#   eval "$(bash .ci/postgres.sh)"      # start; exports ROUNDTABLE_TEST_PG_URL (+ _PG_DIR)
#   bash .ci/postgres.sh stop           # stop it and delete its files
#
# The server refuses to run as root, so the cluster lives in a temporary directory owned by
# the `postgres` user and every server command runs as that user. It listens on 127.0.0.1 at
# a free port only (trust authentication: it is reachable from this machine alone and holds
# nothing but test data). Only the export lines go to stdout; progress goes to stderr.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
STATE_FILE=${ROUNDTABLE_PG_STATE:-/tmp/roundtable-pg.state}
DB_NAME=roundtable_test

log() { echo "postgres.sh: $*" >&2; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        sh -c "$1"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- sh -c "$1"
    else
        su postgres -s /bin/sh -c "$1"
    fi
}

stop() {
    local dir=${1:-}
    if [ -z "$dir" ] && [ -f "$STATE_FILE" ]; then
        dir=$(cat "$STATE_FILE")
    fi
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        log "no cluster to stop"
        rm -f "$STATE_FILE"
        return 0
    fi
    as_postgres "$PG_BIN/pg_ctl -D '$dir/data' -m immediate -w stop" >&2 || true
    rm -rf "$dir"
    rm -f "$STATE_FILE"
    log "stopped and removed $dir"
}

install_pg() {
    if [ -x "$PG_BIN/initdb" ]; then
        return 0
    fi
    log "installing postgresql-15"
    if [ "$(id -u)" -ne 0 ]; then
        log "postgresql-15 is missing and this is not root: apt-get install postgresql-15"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The Debian package would also create and start a default cluster; skip that.
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    apt-get install -y -qq postgresql-15 >&2
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    log "no free port found"
    exit 1
}

start() {
    install_pg
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql \
        --shell /bin/sh postgres
    if [ -f "$STATE_FILE" ] && [ -d "$(cat "$STATE_FILE")" ]; then
        log "a cluster from an earlier start is still there: stopping it first"
        stop
    fi
    local dir port
    dir=$(mktemp -d /tmp/roundtable-pg.XXXXXX)
    PG_DIR=$dir
    chown postgres: "$dir"
    chmod 700 "$dir"
    echo "$dir" >"$STATE_FILE"
    # Started successfully or not, never leave a half-made cluster behind.
    trap 'status=$?; if [ $status -ne 0 ]; then stop "$PG_DIR"; fi' EXIT
    port=$(free_port)
    as_postgres "$PG_BIN/initdb -D '$dir/data' -U postgres -A trust -E UTF8 --no-locale" \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as_postgres "$PG_BIN/pg_ctl -D '$dir/data' -l '$dir/server.log' -w -t 60 \
        -o \"-k '$dir' -h 127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off\" start" >&2 || { cat "$dir/server.log" >&2; exit 1; }
    as_postgres "$PG_BIN/createdb -h 127.0.0.1 -p $port -U postgres $DB_NAME" >&2
    trap - EXIT
    log "PostgreSQL 15 on 127.0.0.1:$port, data in $dir (stop: bash .ci/postgres.sh stop)"
    echo "export ROUNDTABLE_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$port/$DB_NAME"
    echo "export ROUNDTABLE_TEST_PG_DIR=$dir"
}

case "${1:-start}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) log "usage: bash .ci/postgres.sh [start|stop [DIR]]"; exit 2 ;;
esac
