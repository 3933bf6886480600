#!/usr/bin/env bash
# Regenerates docs/benchmarks.md: every workload, Temporal's dev server against Dura (start-dev,
# and a 3-node cluster of local `dura server start` processes), with a release build (a debug build's numbers say nothing about Dura). Extra arguments go to every
# `dura bench compare`, e.g. --duration 60s or --temporal /path/to/temporal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p dura-node --bin dura
dura="${CARGO_TARGET_DIR:-target}/release/dura"
for workload in echo chain timer signal; do
    "$dura" bench compare --workload "$workload" --cluster-nodes 3 --markdown docs/benchmarks.md "$@"
done
