#!/usr/bin/env bash
# Shared by the agent benchmarks (sourced, not run): a release `warden` on random loopback
# ports, one enrolled release `warden-agent` run as the shipped systemd unit runs it, and
# readers of the agent's CPU ticks and RSS.
#
#   start_server "$work"              sets server_pid, http, admin (the admin API token)
#   start_agent "$work" agent.toml    enrolls and runs the agent; sets agent_pid
#   ticks / rss_kib / hwm_kib         the agent's utime+stime ticks, VmRSS, VmHWM
#   count_resources TYPE              resources of a type on the server, every page
#   first_agent                       the first agent of GET /api/agents, as JSON
bin="${WARDEN_BIN:-target/release}"  # another build's binaries, to compare

start_server() {
  local work="$1"
  http=127.0.0.1:$((20000 + RANDOM % 20000)); local quic=127.0.0.1:$((20000 + RANDOM % 20000))
  RUST_LOG=warn "$bin/warden" --data-dir "$work/server" run --http "$http" --quic "$quic" 2>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 50); do curl -sf "http://$http/healthz" >/dev/null && break; sleep 0.2; done
  admin="$(cat "$work/server/admin-token")"
}

start_agent() {
  local work="$1" config="$2" join
  join=$(curl -sf -X POST -H "Authorization: Bearer $admin" "http://$http/api/tokens" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  "$bin/warden-agent" --config "$config" enroll --token "$join" >/dev/null 2>&1
  # As the shipped systemd unit and Kubernetes manifest run it.
  MALLOC_MMAP_THRESHOLD_=131072 RUST_LOG=warn "$bin/warden-agent" --config "$config" run 2>"$work/agent.log" &
  agent_pid=$!
}

count_resources() {
  local n=0 cursor="" page
  while :; do
    page=$(curl -sf -H "Authorization: Bearer $admin" "http://$http/api/resources?type=$1&limit=1000$cursor") || { echo 0; return; }
    n=$((n + $(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))' <<<"$page")))
    cursor=$(python3 -c 'import json,sys; n=json.load(sys.stdin)["next"]; print("&cursor=" + n if n else "")' <<<"$page")
    [ -z "$cursor" ] && break
  done
  echo "$n"
}

first_agent() {
  curl -sf -H "Authorization: Bearer $admin" "http://$http/api/agents?limit=1" |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["items"][0]))'
}

ticks() { awk '{print $14 + $15}' "/proc/$agent_pid/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$agent_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$agent_pid/status"; }
