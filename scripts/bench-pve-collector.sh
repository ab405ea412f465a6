#!/usr/bin/env bash
# Proxmox VE collector cost: a release `warden-agent` as the reporting node of a simulated
# cluster (default 500 nodes, 5,000 guests), streaming to a real local `warden`. Measures the
# agent's CPU time per collection cycle and its RSS.
#
# Usage: scripts/bench-pve-collector.sh [NODES=500] [GUESTS=5000] [SECONDS=60]
# Needs: cargo build --release --bins   (warden, warden-agent, warden-sim)
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-500}"; guests="${2:-5000}"; window="${3:-60}"
interval=5; warmup=15
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

"$bin/warden-sim" pve --nodes "$nodes" --guests "$guests" >"$work/sim.json" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do [ -s "$work/sim.json" ] && break; sleep 0.1; done
read -r url fp token < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["url"], d["fingerprint"], d["token"])' "$work/sim.json")
printf '%s\n' "${token#*=}" >"$work/pve-token"; chmod 600 "$work/pve-token"

start_server "$work"
cat >"$work/agent.toml" <<TOML
data_dir = "$work/agent"
hostname = "node001"
[collectors.host]
enabled = false
[collectors.docker]
enabled = false
[collectors.proxmox]
enabled = true
url = "$url"
token_id = "${token%%=*}"
token_secret_file = "$work/pve-token"
fingerprint = "$fp"
node = "node001"
interval = "${interval}s"
timeout = "${interval}s"
TOML
start_agent "$work" "$work/agent.toml"

sleep "$warmup"
c0=$(ticks); t0=$(date +%s.%N); max_rss=0
end=$(( $(date +%s) + window ))
while [ "$(date +%s)" -lt "$end" ]; do
  r=$(rss_kib); [ "$r" -gt "$max_rss" ] && max_rss=$r
  sleep 1
done
c1=$(ticks); t1=$(date +%s.%N)
hwm=$(hwm_kib)
vms=$(count_resources vm)
lxc=$(count_resources lxc)
health=$(first_agent | python3 -c 'import json,sys; a=json.load(sys.stdin); print(a["collectors"]["proxmox"]["status"], a["collectors"]["proxmox"]["duration_ms"])')
python3 - "$nodes" "$guests" "$interval" "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)" "$max_rss" "$hwm" "$vms" "$lxc" "$health" <<'PY'
import sys
nodes, guests, interval, t0, t1, c0, c1, hz, mx, hwm, vms, lxc, health = sys.argv[1:]
secs = float(t1) - float(t0)
cycles = secs / float(interval)
cpu_ms = (int(c1) - int(c0)) / int(hz) * 1000
print(f"pve-bench: nodes={nodes} guests={guests} guests_reported={int(vms) + int(lxc)} interval_s={interval} window_s={secs:.0f} cycles={cycles:.1f}")
print(f"pve-bench: cpu_ms_per_cycle={cpu_ms / cycles:.1f} (agent total, incl. encode, spool and QUIC)")
print(f"pve-bench: rss_mib_max={int(mx)/1024:.1f} rss_mib_peak_hwm={int(hwm)/1024:.1f} collector_health={health}")
PY
grep -E "WARN|ERROR" "$work/agent.log" | head -5 || true
