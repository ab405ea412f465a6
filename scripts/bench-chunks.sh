#!/usr/bin/env bash
# Chunk codec size (issue 13): bytes per sample of server/src/store/chunk on an hour of real
# agent data (tests/fixtures/metrics/demo-hour.json.gz: this machine's host and Docker
# collectors and the PVE, PBS and Kubernetes simulators, captured from `warden demo`), per
# collector family and overall, with the values as captured and rounded at the source
# (docs/metrics-precision.md). Every chunk is decoded again and compared bit for bit.
# See tests/src/bin/chunk_bench.rs; how the dataset was captured: tests/fixtures/README.md.
#
# Usage: scripts/bench-chunks.sh [DATASET.json.gz] [extra `chunk_bench measure` flags, e.g. --by-metric]
# The figures are sizes, not speeds: a debug build gives the same numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-tests/fixtures/metrics/demo-hour.json.gz}"; shift || true
cargo build -p warden-tests --bin chunk_bench
gzip -dc "$data" | target/debug/chunk_bench measure "$@"
