#!/usr/bin/env bash
# Load tests against real servers (nats-server with JetStream, file storage; redis-server),
# everything on 127.0.0.1:
#
#   plain | safe              the gateway's full path: verify, (decrypt,) parse, durable publish
#                             with PubAck, answer "success"
#   reply-plain | reply-safe  the passive-reply round trip: callback in, JetStream, `wxoa replier`
#                             (rules, claim in Redis), rendezvous, reply XML (encrypted in safe
#                             mode) out
#   send                      customer-service sends: `send` commands through `wxoa replier`
#                             against the simulator, results as notices
#   broadcast                 a template fan-out to N simulated followers (from the directory)
#                             through `wxoa broadcast`, rate limits off: sends/s, peak RSS,
#                             and the simulator's count of distinct recipients and duplicates;
#                             first the baseline: the same sends from a bare HTTP client
#                             (`wxoa-bench-direct fanout`, same concurrency), and the ratio
#   usersync                  a full follower sync of N simulated followers through
#                             `wxoa usersync`: wall time, peak RSS, directory == simulator;
#                             first the baseline: the same calls into a HashMap
#                             (`wxoa-bench-direct sync`), and the ratio
#   tokens                    access_token reads per second from the shared client
#                             (`wxoa-bench-tokens`: from memory, and the Redis path with the
#                             cache off) against what `wxoa token` keeps in Redis, compared
#                             with raw GETs from the same process (and redis-benchmark)
#   baseline                  the ceiling alone: `wxoa-bench-baseline`, a minimal hyper server
#                             answering "success", under the same wrk script and requests
#
# The gateway modes (plain, safe, reply-plain, reply-safe) run the baseline first in the same
# invocation (same requests, duration and connections) and print gateway/baseline ratios of
# req/s, p50 and p99. Every mode ends with the peak RSS (VmHWM) of each process it started.
#
# Usage: tests/bench/run.sh MODE [duration, default 20s] [connections, default 64]
#        (send: tests/bench/run.sh send [commands, default 20000])
#        (usersync: tests/bench/run.sh usersync [followers, default 1000000])
#        (broadcast: tests/bench/run.sh broadcast [followers, default 100000])
#        (tokens: tests/bench/run.sh tokens [seconds per measure, default 10] [tasks, default 64])
# Needs nats-server, redis-server and wrk (apt-get install nats-server redis-server wrk).
set -euo pipefail
mode=${1:-plain}
duration=${2:-20s}
connections=${3:-64}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p wxoa -p wxoa-tests --bin wxoa --bin wxoa-bench-requests --bin wxoa-bench-publish \
  --bin wxoa-bench-send --bin wxoa-bench-baseline --bin wxoa-bench-tokens --bin wxoa-bench-direct

tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
wait_ready() { for _ in $(seq 400); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.05; done; echo "admin $1 never ready" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
nats_port=$(free_port); redis_port=$(free_port); gw_port=$(free_port); sim_port=$(free_port)
admin_gw=$(free_port); admin_rp=$(free_port); admin_tk=$(free_port); base_port=$(free_port)
# Every process started, by name, for the peak-RSS report at the end.
names=(); started=()
track() { names+=("$1"); started+=("$2"); }
peak_rss() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo '?'; }
report_rss() {
  [ ${#started[@]} = 0 ] && return
  echo "== peak RSS (VmHWM), kB:"
  for i in "${!started[@]}"; do
    printf '   %-20s %s\n' "${names[$i]}" "${rss_final[$i]:-$(peak_rss "${started[$i]}")}"
  done
}
declare -A rss_final=()
cleanup() { report_rss; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
pids=()
trap cleanup EXIT

# wrk with the mode's script against URL, its output in FILE too.
run_wrk() {
  wrk -t2 -c"$connections" -d"$duration" --timeout 5s --latency -s "$script" "$1" | tee "$2"
}
# "req/s p50_ms p99_ms" from wrk's output.
wrk_stats() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}
def pct(p):
    v, u = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % p, text, re.M).groups()
    return float(v) * unit[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{rps:.0f} {pct(50):.3f} {pct(99):.3f}")
PY
}
# Starts the baseline, runs the same wrk against it, stops it; its figures in $tmp/baseline.stats.
run_baseline() {
  target/release/wxoa-bench-baseline "127.0.0.1:$base_port" >"$tmp/baseline.log" 2>&1 &
  local pid=$!
  pids+=("$pid"); track wxoa-bench-baseline "$pid"
  wait_port "$base_port"
  echo "== baseline (wxoa-bench-baseline: hyper, \"success\"), $duration, $connections connections, $(nproc) cores"
  run_wrk "http://127.0.0.1:$base_port" "$tmp/baseline.out"
  wrk_stats "$tmp/baseline.out" >"$tmp/baseline.stats"
  rss_final[$((${#started[@]} - 1))]=$(peak_rss "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

if [ "$mode" = baseline ]; then
  script=tests/bench/gateway.lua
  export WXOA_BENCH_FILE="$tmp/requests"
  target/release/wxoa-bench-requests "$WXOA_BENCH_FILE" "${WXOA_BENCH_COUNT:-800000}" 2 wxbench000000001 bench-token
  run_baseline
  read -r rps p50 p99 <"$tmp/baseline.stats"
  echo "== baseline: $rps req/s, p50 $p50 ms, p99 $p99 ms"
  exit 0
fi

nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
pids+=($!); nats_pid=$!; track nats-server "$nats_pid"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!); redis_pid=$!; track redis-server "$redis_pid"
key=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
case "$mode" in *safe) aes=$key ;; *) aes= ;; esac
case "$mode" in reply-*) budget=4000 ;; *) budget=0 ;; esac
cat >"$tmp/rules.toml" <<'TOML'
[[rules]]
id = "echo"
match = { kind = "keyword", mode = "prefix", patterns = ["benchmark"] }
reply = { type = "text", content = "echo: {{content}}" }
TOML
cat >"$tmp/wxoa.toml" <<TOML
[nats]
url = "nats://127.0.0.1:$nats_port"
prefix = "bench"
[redis]
url = "redis://127.0.0.1:$redis_port"
[wechat]
api_base = "http://127.0.0.1:$sim_port"
[gateway]
listen = "127.0.0.1:$gw_port"
timestamp_window_secs = 0
allow_any_timestamp = true
reply_budget_ms = $budget
[sim]
listen = "127.0.0.1:$sim_port"
gateway_url = "http://127.0.0.1:$gw_port"
[replier]
rules_file = "$tmp/rules.toml"
send_rate_per_sec = 0
[telemetry]
log_filter = "warn"
[[apps]]
appid = "wxbench000000001"
secret = "bench-secret"
token = "bench-token"
verified = true
$([ -n "$aes" ] && echo "encoding_aes_key = \"$aes\"")
TOML
wait_port "$nats_port"; wait_port "$redis_port"
export WXOA_CONFIG="$tmp/wxoa.toml"
WXOA__ADMIN__LISTEN=127.0.0.1:$admin_gw ${WXOA_BENCH_ENV:-} target/release/wxoa gateway >"$tmp/gateway.log" 2>&1 &
pids+=($!); gw_pid=$!; track "wxoa gateway" "$gw_pid"
wait_ready "$admin_gw"

if [ "$mode" = broadcast ]; then
  count=${2:-100000}
  target/release/wxoa sim >"$tmp/sim.log" 2>&1 &
  pids+=($!); track "wxoa sim" $!
  wait_port "$sim_port"
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_tk target/release/wxoa token >"$tmp/token.log" 2>&1 &
  pids+=($!); track "wxoa token" $!
  WXOA__USERSYNC__CALLS_PER_SEC=0 WXOA__ADMIN__LISTEN=127.0.0.1:$admin_rp target/release/wxoa usersync >"$tmp/usersync.log" 2>&1 &
  pids+=($!); track "wxoa usersync" $!
  admin_bc=$(free_port)
  WXOA__BROADCAST__SENDS_PER_SEC=0 WXOA__ADMIN__LISTEN=127.0.0.1:$admin_bc target/release/wxoa broadcast >"$tmp/broadcast.log" 2>&1 &
  pids+=($!); bc_pid=$!; track "wxoa broadcast" "$bc_pid"
  wait_ready "$admin_tk"; wait_ready "$admin_rp"; wait_ready "$admin_bc"
  for _ in $(seq 100); do [ "$(redis-cli -p "$redis_port" exists 'wechat:{wxbench000000001}:access_token')" = 1 ] && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$sim_port/_sim/users/generate" -H 'content-type: application/json' \
    -d "{\"appid\":\"wxbench000000001\",\"count\":$count}" >/dev/null
  target/release/wxoa users --app wxbench000000001 sync >/dev/null 2>&1
  template=$(target/release/wxoa broadcasts --app wxbench000000001 call template_add '{"template_id_short":"TM00015"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["template_id"])')
  cat >"$tmp/job.json" <<JSON
{"id": "bench", "kind": "template", "to": {"type": "all"}, "template_id": "$template",
 "url": "https://example.com/bill", "data": {"amount": {"value": "39.8"}}}
JSON
  sim_json() { curl -sf "http://127.0.0.1:$sim_port$1" -H 'content-type: application/json' -d "$2" >/dev/null; }
  sim_json /_sim/template/settings "{\"daily_quota\": $((count * 10))}"
  # The baseline: the same sends, same concurrency, from a bare HTTP client; then the
  # simulator forgets them so that its count below is the job's alone.
  echo "== baseline: the same $count template sends from a bare HTTP client (wxoa-bench-direct), 64 in flight"
  target/release/wxoa-bench-direct "http://127.0.0.1:$sim_port" wxbench000000001 bench-secret fanout "$template" "$count" 64 | tee "$tmp/direct.out"
  curl -sf -X DELETE "http://127.0.0.1:$sim_port/_sim/templates?appid=wxbench000000001" >/dev/null
  echo "== template fan-out: $count followers, 1 broadcast worker, rate limit off, $(nproc) cores"
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$bc_pid/status"); cpu0=$(cpu "$bc_pid")
  start=$(date +%s.%N)
  target/release/wxoa broadcasts --app wxbench000000001 start "$tmp/job.json" 2>/dev/null | tee "$tmp/job.out" | grep -E '"(state|sent|failed|total)"'
  end=$(date +%s.%N)
  echo "== $(python3 -c "print(f'{$count / ($end - $start):.0f} sends/s, {$end - $start:.1f} s')"); broadcast RSS before ${rss0} kB, peak $(awk '/VmHWM/ {print $2}' "/proc/$bc_pid/status") kB; CPU per send $(( ($(cpu "$bc_pid") - cpu0) * 10000000 / $(getconf CLK_TCK) / count )) us/10"
  direct=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "sends/s,") print $i}' "$tmp/direct.out")
  echo "== fan-out vs baseline: sends/s $(python3 -c "print(f'{$count / ($end - $start):.0f} / {$direct} = {$count / ($end - $start) / $direct:.3f}')")"
  echo "== simulator: $(curl -s "http://127.0.0.1:$sim_port/_sim/templates?appid=wxbench000000001&summary=true")"
  exit 0
fi

if [ "$mode" = usersync ]; then
  count=${2:-1000000}
  target/release/wxoa sim >"$tmp/sim.log" 2>&1 &
  pids+=($!); track "wxoa sim" $!
  wait_port "$sim_port"
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_tk target/release/wxoa token >"$tmp/token.log" 2>&1 &
  pids+=($!); track "wxoa token" $!
  WXOA__USERSYNC__CALLS_PER_SEC=0 WXOA__ADMIN__LISTEN=127.0.0.1:$admin_rp target/release/wxoa usersync >"$tmp/usersync.log" 2>&1 &
  pids+=($!); us_pid=$!; track "wxoa usersync" "$us_pid"
  wait_ready "$admin_tk"; wait_ready "$admin_rp"
  for _ in $(seq 100); do [ "$(redis-cli -p "$redis_port" exists 'wechat:{wxbench000000001}:access_token')" = 1 ] && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$sim_port/_sim/users/generate" -H 'content-type: application/json' \
    -d "{\"appid\":\"wxbench000000001\",\"count\":$count}" >/dev/null
  echo "== baseline: the same calls from a bare HTTP client into a HashMap (wxoa-bench-direct)"
  target/release/wxoa-bench-direct "http://127.0.0.1:$sim_port" wxbench000000001 bench-secret sync | tee "$tmp/direct.out"
  echo "== full user sync: $count simulated followers, 1 usersync worker, $(nproc) cores"
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$us_pid/status")
  start=$(date +%s.%N)
  target/release/wxoa users --app wxbench000000001 sync 2>/dev/null | tee "$tmp/sync.json"
  end=$(date +%s.%N)
  echo "== wall time: $(python3 -c "print(round($end - $start, 1))") s; usersync RSS before ${rss0} kB, peak $(awk '/VmHWM/ {print $2}' "/proc/$us_pid/status") kB; CPU $(( $(cpu "$us_pid") * 1000 / $(getconf CLK_TCK) )) ms"
  direct=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "s") print $i}' "$tmp/direct.out" | tail -1)
  echo "== sync vs baseline: followers/s $(python3 -c "w = $end - $start; print(f'{$count / w:.0f} / {$count / $direct:.0f} = {$direct / w:.3f}')")"
  echo "== simulator: $(curl -s "http://127.0.0.1:$sim_port/_sim/users?appid=wxbench000000001")"
  echo "== directory: $(target/release/wxoa users --app wxbench000000001 count | tr -d '\n ') digest $(WXOA_CONFIG="$tmp/wxoa.toml" target/release/wxoa users --app wxbench000000001 digest 2>/dev/null | tr -d '\n ' || true)"
  echo "== redis used_memory: $(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory_human/ {print $2}')"
  exit 0
fi

if [ "$mode" = tokens ]; then
  seconds=${2:-10}; seconds=${seconds%s}
  tasks=${3:-64}
  target/release/wxoa sim >"$tmp/sim.log" 2>&1 &
  pids+=($!); track "wxoa sim" $!
  wait_port "$sim_port"
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_tk target/release/wxoa token >"$tmp/token.log" 2>&1 &
  pids+=($!); track "wxoa token" $!
  wait_ready "$admin_tk"
  for _ in $(seq 100); do [ "$(redis-cli -p "$redis_port" exists 'wechat:{wxbench000000001}:access_token')" = 1 ] && break; sleep 0.1; done
  target/release/wxoa-bench-tokens "$tmp/wxoa.toml" wxbench000000001 "$tasks" "$seconds" &
  bench_pid=$!; track wxoa-bench-tokens "$bench_pid"
  # Sampled while it runs: /proc/<pid> is gone once it exits.
  while kill -0 "$bench_pid" 2>/dev/null; do
    hwm=$(peak_rss "$bench_pid"); [ "$hwm" != '?' ] && rss_final[$((${#started[@]} - 1))]=$hwm; sleep 0.5
  done
  wait "$bench_pid"
  echo "== redis-benchmark GET, $tasks clients, for reference:"
  redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$tasks" -n 1000000 -t get -q 2>&1 | tr '\r' '\n' | grep -E 'requests per second' | tail -1
  exit 0
fi

if [ "$mode" = send ]; then
  count=${2:-20000}
  target/release/wxoa sim >"$tmp/sim.log" 2>&1 &
  pids+=($!); track "wxoa sim" $!
  wait_port "$sim_port"
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_tk target/release/wxoa token >"$tmp/token.log" 2>&1 &
  pids+=($!); track "wxoa token" $!
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_rp target/release/wxoa replier >"$tmp/replier.log" 2>&1 &
  pids+=($!); rp_pid=$!; track "wxoa replier" "$rp_pid"
  wait_ready "$admin_tk"; wait_ready "$admin_rp"
  for _ in $(seq 100); do [ "$(redis-cli -p "$redis_port" exists 'wechat:{wxbench000000001}:access_token')" = 1 ] && break; sleep 0.1; done
  echo "== customer-service sends: $count commands, 1 replier, $(nproc) cores"
  rp0=$(cpu "$rp_pid")
  target/release/wxoa-bench-send "nats://127.0.0.1:$nats_port" bench wxbench000000001 "http://127.0.0.1:$sim_port" "$count"
  rp1=$(cpu "$rp_pid"); hz=$(getconf CLK_TCK)
  echo "== CPU per send: replier $(( (rp1 - rp0) * 1000000 / hz / count )) us"
  curl -s "http://127.0.0.1:$admin_rp/metrics" | grep -v '^#' | grep -v ' 0$' || true
  exit 0
fi

script=tests/bench/gateway.lua
if [ "$budget" != 0 ]; then
  WXOA__ADMIN__LISTEN=127.0.0.1:$admin_rp target/release/wxoa replier >"$tmp/replier.log" 2>&1 &
  pids+=($!); rp_pid=$!; track "wxoa replier" "$rp_pid"
  wait_ready "$admin_rp"
  script=tests/bench/reply.lua
fi

export WXOA_BENCH_FILE="$tmp/requests"
# Enough unique messages for the run (a request beyond them repeats one: a dedupe hit).
target/release/wxoa-bench-requests "$WXOA_BENCH_FILE" "${WXOA_BENCH_COUNT:-800000}" 2 wxbench000000001 bench-token $aes

run_baseline

hz=$(getconf CLK_TCK)
gw0=$(cpu "$gw_pid"); nats0=$(cpu "$nats_pid"); redis0=$(cpu "$redis_pid"); rp0=$( [ -n "${rp_pid:-}" ] && cpu "$rp_pid" || echo 0)
echo "== $mode, $duration, $connections connections, $(nproc) cores"
run_wrk "http://127.0.0.1:$gw_port" "$tmp/wrk.out"
total=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
read -r b_rps b_p50 b_p99 <"$tmp/baseline.stats"
read -r g_rps g_p50 g_p99 < <(wrk_stats "$tmp/wrk.out")
echo "== $mode vs baseline: req/s $g_rps / $b_rps = $(python3 -c "print(f'{$g_rps / $b_rps:.3f}')"), p50 $g_p50 / $b_p50 ms = $(python3 -c "print(f'{$g_p50 / $b_p50:.2f}')"), p99 $g_p99 / $b_p99 ms = $(python3 -c "print(f'{$g_p99 / $b_p99:.2f}')")"
gw1=$(cpu "$gw_pid"); nats1=$(cpu "$nats_pid"); redis1=$(cpu "$redis_pid"); rp1=$( [ -n "${rp_pid:-}" ] && cpu "$rp_pid" || echo 0)
echo "== CPU per request: gateway $(( (gw1 - gw0) * 1000000 / hz / total )) us, nats-server $(( (nats1 - nats0) * 1000000 / hz / total )) us, replier $(( (rp1 - rp0) * 1000000 / hz / total )) us, redis-server $(( (redis1 - redis0) * 1000000 / hz / total )) us"
echo "== counters"
curl -s "http://127.0.0.1:$admin_gw/metrics" | grep -v '^#' | grep -v ' 0$' || true
if [ -n "${rp_pid:-}" ]; then curl -s "http://127.0.0.1:$admin_rp/metrics" | grep -v '^#' | grep -v ' 0$' || true; fi
