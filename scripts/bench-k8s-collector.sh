#!/usr/bin/env bash
# Kubernetes collector cost: a release `warden-agent` watching a simulated cluster (default
# 100 nodes, 10,000 pods) through the Kubernetes API simulator, streaming to a real local
# `warden`. Measures the agent's RSS (peak and steady) and CPU per collection cycle once every
# pod has been listed and reported.
#
# Usage: scripts/bench-k8s-collector.sh [NODES=100] [PODS=10000] [SECONDS=60] [CHURN=10 pod changes/s]
# Needs: cargo build --release --bins   (warden, warden-agent, warden-sim)
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-100}"; pods="${2:-10000}"; window="${3:-60}"; churn="${4:-10}"
interval=10
source scripts/bench-lib.sh
for b in warden warden-agent warden-sim; do
  [ -x "$bin/$b" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
done
work="$(mktemp -d)"
cleanup() {
  for p in ${agent_pid:-} ${server_pid:-} ${sim_pid:-}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/warden-sim" k8s --nodes "$nodes" --pods "$pods" --churn "$churn" --dir "$work/k8s" >"$work/sim.json" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 300); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
kubeconfig=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kubeconfig"])' "$work/sim.json")

start_server "$work"
cat >"$work/agent.toml" <<TOML
data_dir = "$work/agent"
hostname = "k8s-bench"
[collectors.host]
enabled = false
[collectors.docker]
enabled = false
[collectors.kubernetes]
enabled = true
cluster = "bench"
kubeconfig = "$kubeconfig"
interval = "${interval}s"
timeout = "${interval}s"
TOML
start_agent "$work" "$work/agent.toml"

count_pods() { count_resources pod; }
t_start=$(date +%s.%N)
for _ in $(seq 1 600); do
  [ "$(count_pods)" -ge "$pods" ] && break; sleep 0.5
done
t_synced=$(date +%s.%N)
c0=$(ticks); t0=$(date +%s.%N); max_rss=0
end=$(( $(date +%s) + window ))
while [ "$(date +%s)" -lt "$end" ]; do
  r=$(rss_kib); [ "$r" -gt "$max_rss" ] && max_rss=$r
  sleep 1
done
c1=$(ticks); t1=$(date +%s.%N)
hwm=$(hwm_kib)
reported=$(count_pods)
health=$(first_agent | python3 -c 'import json,sys; a=json.load(sys.stdin); c=a["collectors"]["kubernetes"]; print(c["status"], c["duration_ms"])')
python3 - "$nodes" "$pods" "$reported" "$interval" "$t_start" "$t_synced" "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)" "$max_rss" "$hwm" "$health" <<'PY'
import sys
nodes, pods, reported, interval, ts, tsy, t0, t1, c0, c1, hz, mx, hwm, health = sys.argv[1:]
secs = float(t1) - float(t0)
cycles = secs / float(interval)
cpu_ms = (int(c1) - int(c0)) / int(hz) * 1000
print(f"k8s-bench: nodes={nodes} pods={pods} pods_reported={reported} first_full_report_s={float(tsy) - float(ts):.1f}")
print(f"k8s-bench: interval_s={interval} window_s={secs:.0f} cpu_ms_per_cycle={cpu_ms / cycles:.1f} (agent total, incl. encode, spool and QUIC)")
print(f"k8s-bench: rss_mib_max_in_window={int(mx)/1024:.1f} rss_mib_peak_hwm={int(hwm)/1024:.1f} collector_health={health}")
PY
grep -E "WARN|ERROR" "$work/agent.log" | head -5 || true
