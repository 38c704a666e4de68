#!/usr/bin/env bash
# A streaming replica of the local PostgreSQL (127.0.0.1:5432) on 127.0.0.1:5433, for the
# read-replica tests: a data directory made by `pg_basebackup -R` from the primary
# (/var/lib/postgresql/iofold-replica-5433), run with pg_ctl as the `postgres` user.
# Idempotent and quick: a replica that is running, in recovery and streaming is reused (its
# replay resumed if a test left it paused); a stopped one is started; a broken one is made
# again. Needs root. Prints the replica's URL as its last line.
set -euo pipefail

PRIMARY_PORT=5432
REPLICA_PORT="${REPLICA_PORT:-5433}"
VERSION="$(ls /etc/postgresql | sort -n | tail -1)"
BIN="/usr/lib/postgresql/$VERSION/bin"
DATA="/var/lib/postgresql/iofold-replica-$REPLICA_PORT"
LOG="/var/log/postgresql/iofold-replica-$REPLICA_PORT.log"
HBA="/etc/postgresql/$VERSION/main/pg_hba.conf"
as_postgres() { runuser -u postgres -- "$@"; }
sql() { psql -h 127.0.0.1 -U postgres -p "$1" -d postgres -tAq -c "$2"; }

# The primary must accept replication connections from 127.0.0.1 (its "all" rules do not
# cover the replication pseudo-database).
if ! grep -Eq '^\s*host\s+replication\s+all\s+127\.0\.0\.1/32\s+trust' "$HBA"; then
  echo "host replication all 127.0.0.1/32 trust" >>"$HBA"
  sql "$PRIMARY_PORT" "SELECT pg_reload_conf()" >/dev/null
fi

healthy() {
  pg_isready -h 127.0.0.1 -p "$REPLICA_PORT" -q 2>/dev/null &&
    [[ "$(sql "$REPLICA_PORT" "SELECT pg_is_in_recovery()" 2>/dev/null)" == t ]] &&
    [[ "$(sql "$REPLICA_PORT" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" == streaming ]]
}

wait_healthy() {
  for _ in $(seq 1 60); do
    healthy && return 0
    sleep 0.5
  done
  return 1
}

start_replica() {
  touch "$LOG" && chown postgres:postgres "$LOG"
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 start >/dev/null
}

# A stopped but sound replica only needs starting.
if ! healthy && [[ -f "$DATA/standby.signal" ]]; then
  start_replica || true
  wait_healthy || true
fi

if ! healthy; then
  echo "replica: (re)creating the streaming replica on port $REPLICA_PORT" >&2
  if [[ -f "$DATA/postmaster.pid" ]]; then
    as_postgres "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DATA"
  install -d -o postgres -g postgres -m 700 "$DATA"
  as_postgres pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$DATA" -R -X stream -c fast
  # Debian keeps the primary's configuration in /etc: the replica gets its own, minimal one.
  printf '%s\n' \
    "port = $REPLICA_PORT" \
    "listen_addresses = '127.0.0.1'" \
    "unix_socket_directories = '/var/run/postgresql'" \
    "hot_standby = on" \
    "hot_standby_feedback = on" \
    "max_connections = 200" >"$DATA/postgresql.conf"
  printf '%s\n' "local all all trust" "host all all 127.0.0.1/32 trust" >"$DATA/pg_hba.conf"
  chown postgres:postgres "$DATA/postgresql.conf" "$DATA/pg_hba.conf"
  start_replica
  if ! wait_healthy; then
    echo "replica: the replica on port $REPLICA_PORT did not start streaming" >&2
    tail -20 "$LOG" >&2 || true
    exit 1
  fi
fi

# Replay may have been left paused by an interrupted test run.
if [[ "$(sql "$REPLICA_PORT" "SELECT pg_is_wal_replay_paused()")" == t ]]; then
  sql "$REPLICA_PORT" "SELECT pg_wal_replay_resume()" >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$REPLICA_PORT/test"
