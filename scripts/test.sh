#!/usr/bin/env bash
# Runs every check and test Warden has, on a fresh Debian machine or a developer's.
# Installs what the tests need (Debian's make, docker.io and busybox-static, and prometheus and
# victoria-metrics as remote-write receivers, without their recommended extras), starts dockerd
# when none is running (and leaves an already running one alone), then: fmt, clippy,
# build, and the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

missing=()
# make builds jemalloc, the server's allocator (a C compiler is needed anyway, for ring).
command -v make >/dev/null 2>&1 || missing+=(make)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The remote-write receivers, without their recommended extras (prometheus's node exporter).
receivers=()
command -v prometheus >/dev/null 2>&1 || receivers+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || receivers+=(victoria-metrics)
if [ ${#receivers[@]} -gt 0 ]; then
  log "installing ${receivers[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  [ ${#missing[@]} -gt 0 ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${receivers[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /tmp/warden-dockerd.log)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO sh -c 'nohup dockerd >/tmp/warden-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -n 30 /tmp/warden-dockerd.log >&2; log "dockerd did not start"; exit 1; }
fi

# A one-shot build gains nothing from incremental state, which costs gigabytes of disk.
export CARGO_INCREMENTAL=0

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building binaries"
cargo build --workspace --bins --locked
log "running tests"
results="$(mktemp)"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals over every test binary.
grep -E '^test result:' "$results" | awk '{ for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
  END { printf "%d passed, %d failed\n", p, f }'
rm -f "$results"
exit "$status"
