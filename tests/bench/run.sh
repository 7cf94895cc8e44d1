#!/usr/bin/env bash
# Load test of the gateway's full path against a real nats-server with JetStream (file storage):
# verify, (decrypt,) parse, durable publish with PubAck, answer "success".
#
# Usage: tests/bench/run.sh [plain|safe] [duration, default 20s] [connections, default 64]
# Needs nats-server and wrk (apt-get install nats-server wrk). Everything runs on 127.0.0.1.
set -euo pipefail
mode=${1:-plain}
duration=${2:-20s}
connections=${3:-64}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p wxoa -p wxoa-tests --bin wxoa --bin wxoa-bench-requests --bin wxoa-bench-publish

tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port); gw_port=$(free_port); admin_port=$(free_port)
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
pids=()
trap cleanup EXIT

nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/js" >"$tmp/nats.log" 2>&1 &
pids+=($!)
key=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
cat >"$tmp/wxoa.toml" <<TOML
[nats]
url = "nats://127.0.0.1:$nats_port"
prefix = "bench"
[gateway]
listen = "127.0.0.1:$gw_port"
timestamp_window_secs = 0
reply_budget_ms = 0
[admin]
listen = "127.0.0.1:$admin_port"
[telemetry]
log_filter = "warn"
[[apps]]
appid = "wxbench000000001"
secret = "bench-secret"
token = "bench-token"
$([ "$mode" = safe ] && echo "encoding_aes_key = \"$key\"")
TOML
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$nats_port") 2>/dev/null && break; sleep 0.05; done
WXOA_CONFIG="$tmp/wxoa.toml" ${WXOA_BENCH_ENV:-} target/release/wxoa gateway >"$tmp/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null && break; sleep 0.05; done

export WXOA_BENCH_FILE="$tmp/requests"
[ "$mode" = safe ] && aes=$key || aes=
# Enough unique messages for the run (a request beyond them repeats one: a dedupe hit).
target/release/wxoa-bench-requests "$WXOA_BENCH_FILE" "${WXOA_BENCH_COUNT:-800000}" 2 wxbench000000001 bench-token $aes

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
gw_pid=${pids[1]}; nats_pid=${pids[0]}; hz=$(getconf CLK_TCK)
gw0=$(cpu "$gw_pid"); nats0=$(cpu "$nats_pid")
echo "== gateway full path, $mode mode, $duration, $connections connections, $(nproc) cores"
wrk -t2 -c"$connections" -d"$duration" --latency -s tests/bench/gateway.lua "http://127.0.0.1:$gw_port" | tee "$tmp/wrk.out"
total=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
gw1=$(cpu "$gw_pid"); nats1=$(cpu "$nats_pid")
echo "== CPU per request: gateway $(( (gw1 - gw0) * 1000000 / hz / total )) us, nats-server $(( (nats1 - nats0) * 1000000 / hz / total )) us"
echo "== gateway counters"
curl -s "http://127.0.0.1:$admin_port/metrics" | grep -v '^#' | grep -v ' 0$' || true
