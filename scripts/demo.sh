#!/usr/bin/env bash
# Builds Warden and runs `warden demo`: a server plus five enrolled agents on this machine
# (one collects this host and its Docker containers, four simulate Proxmox-like nodes).
# Extra arguments go to `warden demo` (see `warden demo --help`). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building (release; the first build takes a few minutes)" >&2
cargo build --release --locked --bins
exec target/release/warden demo "$@"
