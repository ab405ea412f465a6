#!/usr/bin/env bash
# Patrol run cost: one full Patrol run over a synthetic 10,000-resource fleet with 7 days of
# history, in a store built with the warden_server library (no server process). Prints the
# setup (ingest) time, the store size and the run time (median of RUNS, split into snapshot,
# detectors and the rest). See tests/src/bin/patrol_bench.rs for the fleet and the history.
#
# Usage: scripts/bench-patrol.sh [RUNS=5] [extra patrol_bench flags, e.g. --scale 0.1]
# Needs ~4 GB free in $TMPDIR (the store is deleted at the end) and ~5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"; shift || true
cargo build --release -p warden-tests --bin patrol_bench
target/release/patrol_bench --runs "$runs" "$@"
