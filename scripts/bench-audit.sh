#!/usr/bin/env bash
# Audit log targets (issue 5), measured with the warden_server library in one process: the raw
# append rate (Store::audit_append, 1024 events per fsynced commit), verification of the
# 1,000,000-event chain it built (Store::audit_verify), Auditor::record at 1, 8, 64 and 256
# concurrent callers (events/s and per-call latency), and an in-process server answering an
# unaudited GET and audited PUTs of /api/ai/patrol/settings. See tests/src/bin/audit_bench.rs.
#
# Usage: scripts/bench-audit.sh [EVENTS=1000000] [extra audit_bench flags, e.g. --skip-http]
# Needs ~0.6 GB free in $TMPDIR (deleted at the end) and about a minute. The machine should be
# otherwise idle: the latency figures are mostly thread hand-offs and one fsync, and other
# processes on the 2 cores show up as run-queue wait (reported as runqueue_wait_pct).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"; shift || true
cargo build --release -p warden-tests --bin audit_bench
target/release/audit_bench --events "$events" "$@"
