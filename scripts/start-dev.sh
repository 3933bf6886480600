#!/usr/bin/env bash
# Starts a single-node development server, `dura server start-dev`, with the flags of
# `temporal server start-dev`. Installs what a fresh machine lacks to build, and builds the
# release binary on first use (RocksDB's C++ makes that 20-30 minutes on two cores).
#
#   bash scripts/start-dev.sh --db-filename dura-data
#
# Relative paths are the caller's (it runs where it is started). DURA_BIN=/path/to/dura runs
# that binary instead of building one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${DURA_BIN:-}" ]; then
  exec "$DURA_BIN" server start-dev "$@"
fi
source "$ROOT/scripts/build-prerequisites.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dura-target}"
exec cargo run --release --locked --manifest-path "$ROOT/Cargo.toml" -p dura-node --bin dura -- \
  server start-dev "$@"
