#!/usr/bin/env bash
# A local Dura cluster: N real `dura server start` processes on 127.0.0.1.
#
#   deploy/local-cluster.sh start [N]      start N nodes (default 3), wait until each serves
#   deploy/local-cluster.sh stop           SIGTERM every node, wait for them to exit
#   deploy/local-cluster.sh status         which nodes run, with their ports
#   deploy/local-cluster.sh kill NODE      SIGKILL node NODE (1-based)
#   deploy/local-cluster.sh restart NODE   start node NODE again on its data directory
#
# Node i (from 1) serves clients on 7233 + 10·(i-1) (7233, 7243, 7253, …), peers on that
# port + 1, /metrics on that port + 2 and the HTTP API on + 3; its data, log and pid live
# in ./.dura-cluster/node-i.
# The binary is $DURA_BIN, else `dura` on PATH, else the debug build in $CARGO_TARGET_DIR
# (default ~/.cache/dura-target). Each shard has 3 replicas (all nodes when N < 3), or
# $DURA_CLUSTER_REPLICATION. Extra flags for every node: $DURA_CLUSTER_ARGS.
set -euo pipefail

DIR="${DURA_CLUSTER_DIR:-$PWD/.dura-cluster}"
BASE_PORT="${DURA_CLUSTER_BASE_PORT:-7233}"

die() { echo "local-cluster.sh: $*" >&2; exit 1; }

dura_bin() {
  if [ -n "${DURA_BIN:-}" ]; then echo "$DURA_BIN"
  elif command -v dura >/dev/null 2>&1; then command -v dura
  else echo "${CARGO_TARGET_DIR:-$HOME/.cache/dura-target}/debug/dura"
  fi
}

client_port() { echo $((BASE_PORT + 10 * ($1 - 1))); }
peer_port() { echo $(($(client_port "$1") + 1)); }
metrics_port() { echo $(($(client_port "$1") + 2)); }
http_port() { echo $(($(client_port "$1") + 3)); }
node_dir() { echo "$DIR/node-$1"; }
pid_of() { cat "$(node_dir "$1")/pid" 2>/dev/null || true; }
running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
size() { cat "$DIR/size" 2>/dev/null || die "no cluster in $DIR (run start first)"; }

start_node() {
  local i="$1" n="$2" bin members=""
  bin="$(dura_bin)"
  [ -x "$bin" ] || die "dura binary not found at $bin (set DURA_BIN)"
  running "$i" && { echo "node $i already running (pid $(pid_of "$i"))"; return; }
  for j in $(seq 1 "$n"); do members="${members:+$members,}$j=127.0.0.1:$(peer_port "$j")"; done
  mkdir -p "$(node_dir "$i")"
  # shellcheck disable=SC2086 # DURA_CLUSTER_ARGS is a list of flags
  "$bin" server start --node-id "$i" --data-dir "$(node_dir "$i")/data" \
    --port "$(client_port "$i")" --peer-port "$(peer_port "$i")" \
    --metrics-port "$(metrics_port "$i")" --http-port "$(http_port "$i")" --initial-cluster "$members" --peer-plaintext \
    --replication "${DURA_CLUSTER_REPLICATION:-$((n < 3 ? n : 3))}" ${DURA_CLUSTER_ARGS:-} \
    >>"$(node_dir "$i")/log" 2>&1 </dev/null &
  echo $! >"$(node_dir "$i")/pid"
  echo "node $i: pid $!, client 127.0.0.1:$(client_port "$i"), peer 127.0.0.1:$(peer_port "$i"), HTTP API 127.0.0.1:$(http_port "$i")"
}

# Ready once the node answers gRPC health for the workflow service (it has joined a quorum
# and bootstrapped). Uses bash's /dev/tcp for the port, then the node's own log.
wait_ready() {
  local i="$1" deadline=$((SECONDS + 90))
  while [ "$SECONDS" -lt "$deadline" ]; do
    running "$i" || { tail -n 30 "$(node_dir "$i")/log" >&2; die "node $i exited"; }
    if grep -q "Dura node ready" "$(node_dir "$i")/log" 2>/dev/null; then return; fi
    sleep 0.2
  done
  tail -n 30 "$(node_dir "$i")/log" >&2
  die "node $i not ready after 90 s"
}

case "${1:-}" in
  start)
    n="${2:-3}"
    [ "$n" -ge 1 ] || die "N must be at least 1"
    mkdir -p "$DIR"
    if [ -f "$DIR/size" ] && [ "$(cat "$DIR/size")" != "$n" ]; then
      die "$DIR holds a cluster of $(cat "$DIR/size") nodes"
    fi
    echo "$n" >"$DIR/size"
    for i in $(seq 1 "$n"); do start_node "$i" "$n"; done
    for i in $(seq 1 "$n"); do wait_ready "$i"; done
    echo "cluster of $n ready: any node serves, e.g. 127.0.0.1:$(client_port 1)"
    ;;
  stop)
    n="$(size)"
    for i in $(seq 1 "$n"); do running "$i" && kill -TERM "$(pid_of "$i")"; done
    for i in $(seq 1 "$n"); do
      for _ in $(seq 1 150); do running "$i" || break; sleep 0.1; done
      running "$i" && kill -KILL "$(pid_of "$i")"
      rm -f "$(node_dir "$i")/pid"
    done
    echo "stopped"
    ;;
  status)
    n="$(size)"
    for i in $(seq 1 "$n"); do
      if running "$i"; then state="running (pid $(pid_of "$i"))"; else state="stopped"; fi
      echo "node $i: $state, client 127.0.0.1:$(client_port "$i"), peer 127.0.0.1:$(peer_port "$i")"
    done
    ;;
  kill)
    i="${2:?usage: kill NODE}"
    running "$i" || die "node $i is not running"
    kill -KILL "$(pid_of "$i")"
    rm -f "$(node_dir "$i")/pid"
    echo "node $i killed"
    ;;
  restart)
    i="${2:?usage: restart NODE}"
    n="$(size)"
    running "$i" && die "node $i is running"
    start_node "$i" "$n"
    wait_ready "$i"
    ;;
  *)
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
