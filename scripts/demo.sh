#!/usr/bin/env bash
# Builds Warden and runs `warden demo`: a server, the simulated fleet (`warden-sim fleet`: a
# 3-node Proxmox VE cluster, a Proxmox Backup Server, a Kubernetes cluster, with seeded trouble)
# and six enrolled agents on this machine. See docs/demo.md.
# Extra arguments go to `warden demo` (see `warden demo --help`). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v make >/dev/null 2>&1; then
  # make builds jemalloc, the server's allocator.
  echo "==> installing make" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq make >/dev/null
fi
echo "==> building (release; the first build takes a few minutes)" >&2
cargo build --release --locked --bins
exec target/release/warden demo "$@"
