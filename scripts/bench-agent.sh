#!/usr/bin/env bash
# Agent footprint benchmark: steady RSS and CPU of a release `warden-agent` collecting this
# host and 20+ Docker containers at a 10 s interval, streaming to a real local `warden`.
#
# Usage: scripts/bench-agent.sh [CONTAINERS=22] [SECONDS=120]
# Needs: a running dockerd (scripts/test.sh starts one) and a release build
# (`cargo build --release --bins`). Prints greppable `agent-bench:` lines.
set -euo pipefail
cd "$(dirname "$0")/.."
containers="${1:-22}"
window="${2:-120}"
warmup=20
source scripts/bench-lib.sh
[ -x "$bin/warden" ] && [ -x "$bin/warden-agent" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
scripts/docker-test-image.sh
work="$(mktemp -d)"
cleanup() {
  [ -n "${agent_pid:-}" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  docker ps -aq --filter name=warden-bench- | xargs -r docker rm -f >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

docker ps -aq --filter name=warden-bench- | xargs -r docker rm -f >/dev/null
for i in $(seq 1 "$containers"); do
  docker run -d --name "warden-bench-$i" warden-test/busybox:latest sleep 3600 >/dev/null
done

start_server "$work"
cat >"$work/agent.toml" <<TOML
data_dir = "$work/agent"
[collectors.host]
interval = "10s"
[collectors.docker]
interval = "10s"
TOML
start_agent "$work" "$work/agent.toml"

sleep "$warmup"
t0=$(date +%s.%N); c0=$(ticks); max_rss=0
end=$(( $(date +%s) + window ))
while [ "$(date +%s)" -lt "$end" ]; do
  r=$(rss_kib); [ "$r" -gt "$max_rss" ] && max_rss=$r
  sleep 5
done
t1=$(date +%s.%N); c1=$(ticks); final_rss=$(rss_kib)
hwm=$(hwm_kib)
hz=$(getconf CLK_TCK)
seen=$(count_resources docker)
python3 - "$containers" "$window" "$t0" "$t1" "$c0" "$c1" "$hz" "$max_rss" "$final_rss" "$hwm" "$seen" <<'PY'
import sys
n, window, t0, t1, c0, c1, hz, mx, fin, hwm, seen = sys.argv[1:]
secs = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(hz) / secs * 100
print(f"agent-bench: containers={n} containers_reported={seen} interval_s=10 window_s={secs:.0f}")
print(f"agent-bench: cpu_pct_of_one_core={cpu:.3f}")
print(f"agent-bench: rss_mib_max={int(mx)/1024:.1f} rss_mib_final={int(fin)/1024:.1f} rss_mib_peak_hwm={int(hwm)/1024:.1f}")
PY
grep -E "WARN|ERROR" "$work/agent.log" | head -5 || true
