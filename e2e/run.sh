#!/usr/bin/env bash
# End-to-end tests with real clients (Apollo Client, GraphiQL in headless Chromium,
# graphql-js schema tooling) against the real server binary.
#
#   bash e2e/run.sh
#
# Builds the server (`cargo build`, a no-op when it is up to date), installs the Node
# packages when e2e/node_modules is missing, then for each backend: starts the server on a
# free port against a fresh database (a temporary SQLite file; a fresh schema of the local
# PostgreSQL test database), seeds it, takes the demo token the seed prints, waits for
# /health, runs the tests, and always stops the server and removes the database.
#
# Environment:
#   E2E_BACKENDS   which backends (default "sqlite postgres"); PostgreSQL runs the Apollo
#                  suite only (the browser and schema tests do not depend on the backend)
#   E2E_PG_URL     PostgreSQL database (default postgres://postgres@127.0.0.1:5432/test);
#                  when it is unreachable the PostgreSQL run is skipped, unless CI is set
#   E2E_TESTS      test files to run on SQLite (default: all of tests/*.test.mjs); on
#                  PostgreSQL only tests/apollo.test.mjs runs, when it is among them
#   E2E_PG_READ_URL  a streaming replica of E2E_PG_URL's server (default: TEST_DATABASE_READ_URL,
#                  else postgres://postgres@127.0.0.1:5433/test when it answers as a standby;
#                  `.ci/replica.sh` starts one): on PostgreSQL, tests/replica.test.mjs then runs
#                  against a second server reading from it (the consistency link); without a
#                  replica it is skipped, unless CI is set
#   IOFOLD_BIN     a server binary to use instead of building target/debug/iofold-graph
#   E2E_CHROMIUM   the browser (default /usr/bin/chromium)
# Exits non-zero when any test fails or the server does not start.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E_DIR/.." && pwd)
ARTIFACTS="$E2E_DIR/artifacts"
BACKENDS=${E2E_BACKENDS:-sqlite postgres}
TESTS=${E2E_TESTS:-tests/apollo.test.mjs tests/browser.test.mjs tests/schema.test.mjs}
PG_URL=${E2E_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_READ_URL=${E2E_PG_READ_URL:-${TEST_DATABASE_READ_URL:-postgres://postgres@127.0.0.1:5433/test}}
started=$(date +%s)

log() { printf 'e2e: %s\n' "$*" >&2; }

# A service a run needs is missing: fatal when CI is set, otherwise the run is skipped.
required_or_skip() {
  if [[ -n "${CI:-}" ]]; then
    log "$1 and CI is set: failing"; exit 1
  fi
  log "$1: skipping $2"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iofold-e2e.XXXXXX")
SERVER_PID=""
PG_SCHEMA=""

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "the server did not stop within 5 s: killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

drop_pg_schema() {
  if [[ -n "$PG_SCHEMA" ]]; then
    psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS \"$PG_SCHEMA\" CASCADE" >/dev/null 2>&1 ||
      log "could not drop the PostgreSQL schema $PG_SCHEMA"
    PG_SCHEMA=""
  fi
}

cleanup() {
  stop_server
  drop_pg_schema
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the server binary ------------------------------------------------------------------
if [[ -n "${IOFOLD_BIN:-}" ]]; then
  BIN=$IOFOLD_BIN
else
  log "building the server (cargo build)"
  (cd "$ROOT" && cargo build --bin iofold-graph)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/iofold-graph"
fi
[[ -x "$BIN" ]] || { log "no server binary at $BIN"; exit 1; }

# --- the Node packages ------------------------------------------------------------------
if [[ ! -d "$E2E_DIR/node_modules" ]]; then
  log "installing the Node packages (npm ci)"
  (cd "$E2E_DIR" && npm ci --no-audit --no-fund)
fi

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png "$ARTIFACTS"/server-*.log

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Seeds the database, starts the server on a free port and waits for /health.
# Sets SERVER_PID, E2E_URL, E2E_TOKEN (the demo user's) and E2E_OUTSIDER_TOKEN (a user
# of no workspace).
start_server() {
  local name=$1 database_url=$2 read_url=${3:-}
  local server_log="$ARTIFACTS/server-$name.log"
  # A clean environment for the server: the caller's settings must not leak in.
  local -a env=(env -u APP_ENV -u NODE_ENV -u IOFOLD_ADMIN_SECRET -u RATE_LIMIT_PER_MINUTE
    DATABASE_URL="$database_url" HOST=127.0.0.1 GRAPHIQL=true GRAPHQL_INTROSPECTION=true
    IOFOLD_ENCRYPTION_KEY="$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')"
    SHUTDOWN_GRACE_MS=2000 LOG_FORMAT=human RUST_LOG="${RUST_LOG:-info}" DATABASE_READ_URLS="$read_url")

  local seed_out
  if ! seed_out=$("${env[@]}" "$BIN" seed 2>>"$server_log"); then
    log "seeding the $name database failed:"; cat "$server_log" >&2; return 1
  fi
  E2E_TOKEN=$(printf '%s\n' "$seed_out" | grep -oE 'iofold_[0-9a-f]{64}' | head -n1 || true)
  if [[ -z "$E2E_TOKEN" ]]; then
    log "the seed printed no demo token:"; printf '%s\n' "$seed_out" >&2; return 1
  fi

  # A second user, member of no workspace: for the tenancy checks.
  local outsider_out
  if ! outsider_out=$("${env[@]}" "$BIN" token create --email outsider@e2e.test --name e2e 2>>"$server_log"); then
    log "creating the outsider's token failed:"; cat "$server_log" >&2; return 1
  fi
  E2E_OUTSIDER_TOKEN=$(printf '%s\n' "$outsider_out" | grep -oE 'iofold_[0-9a-f]{64}' | head -n1 || true)
  [[ -n "$E2E_OUTSIDER_TOKEN" ]] || { log "token create printed no token: $outsider_out"; return 1; }

  local attempt port
  for attempt in 1 2 3; do
    port=$(free_port)
    "${env[@]}" PORT="$port" "$BIN" serve >>"$server_log" 2>&1 &
    SERVER_PID=$!
    E2E_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 300); do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      if curl -fsS -o /dev/null --max-time 2 "$E2E_URL/health" 2>/dev/null; then
        log "$name server up at $E2E_URL (pid $SERVER_PID, log $server_log)"
        export E2E_URL E2E_TOKEN E2E_OUTSIDER_TOKEN
        return 0
      fi
      sleep 0.1
    done
    log "the $name server did not become healthy (attempt $attempt); its log:"
    tail -n 30 "$server_log" >&2
    stop_server
  done
  return 1
}

# Runs node's test runner on the given files; adds its counts to the totals.
PASSED=0
FAILED=0
FAILURES=0
run_tests() {
  local name=$1; shift
  local out="$WORK/node-test-$name.out" status=0
  log "running $* against $name"
  (cd "$E2E_DIR" && E2E_BACKEND="$name" node --test --test-reporter=spec --test-concurrency=1 \
    --test-timeout=180000 "$@") 2>&1 | tee "$out" || status=$?
  local pass fail
  pass=$(grep -aE '^ℹ pass [0-9]+' "$out" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  fail=$(grep -aE '^ℹ fail [0-9]+' "$out" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  PASSED=$((PASSED + pass))
  FAILED=$((FAILED + fail))
  if [[ $status -ne 0 ]]; then
    FAILURES=$((FAILURES + 1))
    log "tests failed against $name; the server log is $ARTIFACTS/server-$name.log"
  fi
}

for backend in $BACKENDS; do
  case $backend in
    sqlite)
      start_server sqlite "$WORK/e2e.db"
      # shellcheck disable=SC2086 # a list of files
      run_tests sqlite $TESTS
      stop_server
      ;;
    postgres)
      [[ " $TESTS " == *" tests/apollo.test.mjs "* ]] || continue
      if ! pg_isready -q -d "$PG_URL" 2>/dev/null; then
        required_or_skip "PostgreSQL at $PG_URL is unreachable" "the PostgreSQL run"
        continue
      fi
      PG_SCHEMA="e2e_$(date +%s)_$$"
      psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA \"$PG_SCHEMA\""
      sep='?'; [[ $PG_URL == *\?* ]] && sep='&'
      start_server postgres "$PG_URL${sep}options=-csearch_path%3D$PG_SCHEMA"
      run_tests postgres tests/apollo.test.mjs
      stop_server
      drop_pg_schema

      # The same primary with its streaming replica: the consistency link (read-your-writes).
      if [[ "$(psql "$PG_READ_URL" -tAqc 'SELECT pg_is_in_recovery()' 2>/dev/null)" != t ]]; then
        required_or_skip "no read replica answers at $PG_READ_URL (bash .ci/replica.sh starts one)" "the replica run"
        continue
      fi
      PG_SCHEMA="e2e_replica_$(date +%s)_$$"
      psql "$PG_URL" -q -v ON_ERROR_STOP=1 -c "CREATE SCHEMA \"$PG_SCHEMA\""
      options="options=-csearch_path%3D$PG_SCHEMA"
      rsep='?'; [[ $PG_READ_URL == *\?* ]] && rsep='&'
      start_server postgres-replica "$PG_URL${sep}$options" "$PG_READ_URL${rsep}$options"
      export E2E_REPLICA_URL="$PG_READ_URL${rsep}$options"
      run_tests postgres-replica tests/replica.test.mjs
      unset E2E_REPLICA_URL
      stop_server
      drop_pg_schema
      ;;
    *) log "unknown backend $backend (sqlite, postgres)"; exit 2 ;;
  esac
done

log "done in $(( $(date +%s) - started )) s; artifacts in $ARTIFACTS"
echo "e2e: $PASSED passed, $FAILED failed"
if [[ $FAILURES -ne 0 || $FAILED -ne 0 ]]; then
  exit 1
fi
