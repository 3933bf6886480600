#!/usr/bin/env bash
# Runs Dura's whole test suite: the Rust workspace (unit, storage-suite and end-to-end tests),
# the SDK conformance suite, Dura's own Python-SDK tests and its TypeScript-SDK suite.
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

# librocksdb-sys generates its bindings with bindgen, which needs libclang.
if ! ldconfig -p | grep -q 'libclang\(-[0-9.]*\)\?\.so'; then
  echo "test.sh: installing libclang-dev (needed to build RocksDB bindings)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi

echo "test.sh: cargo test --workspace" >&2
# End-to-end tests spawn the real binary, so it is built first. Both commands select the
# whole workspace with all targets, so they resolve features identically and share every
# artifact (a different selection would rebuild RocksDB's C++ from scratch).
cargo build --workspace --all-targets --locked
cargo test --workspace --locked

# Conformance: the whole acceptance suite.
SUITE="${DURA_CONFORMANCE_DIR:-$ROOT/../shared/conformance}"
if [ -f "$SUITE/run.sh" ]; then
  echo "test.sh: conformance suite" >&2
  DURA_BIN="$CARGO_TARGET_DIR/debug/dura" bash "$SUITE/run.sh" dura
else
  echo "test.sh: conformance suite not found at $SUITE" >&2
  exit 1
fi

# Dura's own Python-SDK tests: histories against expectations recorded from the real dev
# server, 200 concurrent workflows, and SIGKILL mid-run. Same virtualenv as the suite.
VENV="${CONFORMANCE_VENV:-.venv-conformance}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
echo "test.sh: tests/python" >&2
(cd tests/python && DURA_BIN="$CARGO_TARGET_DIR/debug/dura" "$VENV/bin/python" -m pytest -q .)

# Dura's own TypeScript-SDK suite (a second SDK is a second judge): against Dura, then against
# the real dev server whose behaviour it encodes. Installs Node packages with `npm ci`.
echo "test.sh: tests/typescript against dura" >&2
DURA_BIN="$CARGO_TARGET_DIR/debug/dura" bash tests/typescript/run.sh dura
echo "test.sh: tests/typescript against the real dev server" >&2
bash tests/typescript/run.sh temporal
