#!/usr/bin/env bash
# Server throughput on loopback with wrk: POST /jobs (submissions per second)
# and GET /jobs/{id} of a queued and of a running job (latency p50/p99),
# all at concurrency 32.
#
# Workers are replaced by a stand-in that sleeps, holding the one slot, so
# that the numbers are the API's and the store's (SQLite, synchronous=FULL),
# not quantization competing for the same two cores.
# Usage: bench/server_bench.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
[[ -x build/bin/qjobs-server ]] || scripts/build.sh
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/qjobs-bench.XXXXXX")  # TMPDIR=/dev/shm: without the disk
trap 'kill $server_pid 2>/dev/null || true; pkill -f "$work/sleeper" || true; rm -rf "$work"' EXIT
# The stand-in reports progress once (status.json, as a worker at 3 of 7
# steps would), so that GET of the running job reads what a poller sees.
cat >"$work/sleeper" <<'SH'
#!/bin/sh
printf '{"state":"RUNNING","stage":"quantize","stages":["model_load","quantize"],"stage_index":1,"done":3,"total":7,"eta_s":12,"metrics":{},"attempt":1,"pid":%d,"updated_at":%d}' $$ "$(date +%s)" >"$4/status.json"
exec sleep 600
SH
chmod +x "$work/sleeper"
build/bin/qjobs-server --listen 127.0.0.1:0 --user-data "$work/ud" --slots 1 --worker "$work/sleeper" \
  --log-level warn >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$work/server.out")
url="http://127.0.0.1:$port"

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/yaml"
wrk.body = "MODEL: \"examples/kjv-llama\"\nALGORITHM: RTN\nJOB_ID: bench\nllm:\n  RTN:\n    W_BIT: 4\n    Q_GROUP_SIZE: 128\n"
LUA

post=$(wrk -t2 -c32 -d"${secs}s" --latency -s "$work/post.lua" "$url/jobs")
metrics=$(curl -fsS "$url/metrics")
stored=$(echo "$metrics" | sed -n 's/^qjobs_store_inserts_total \(.*\)/\1/p')
commits=$(echo "$metrics" | sed -n 's/^qjobs_store_insert_commits_total \(.*\)/\1/p')
id=$(curl -fsS "$url/jobs?limit=1&state=QUEUED" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
get=$(wrk -t2 -c32 -d"${secs}s" --latency "$url/jobs/$id")
running=$(curl -fsS "$url/jobs?limit=1&state=RUNNING" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1)
curl -fsS "$url/jobs/$running" | grep -q '"done":3' || { echo "the running job shows no progress"; exit 1; }
getrun=$(wrk -t2 -c32 -d"${secs}s" --latency "$url/jobs/$running")

field() { echo "$1" | awk -v k="$2" '$1 == k {print $2}'; }
rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
non2xx() { echo "$1" | awk '/Non-2xx/ {print $5}'; }

printf '\n| endpoint (c=32, %ss, 2 cores shared with wrk) | req/s | p50 | p90 | p99 | non-2xx |\n' "$secs"
printf '|---|---|---|---|---|---|\n'
printf '| POST /jobs (submit) | %s | %s | %s | %s | %s |\n' "$(rps "$post")" "$(field "$post" 50%)" \
  "$(field "$post" 90%)" "$(field "$post" 99%)" "$(non2xx "$post")"
printf '| GET /jobs/{id} (QUEUED) | %s | %s | %s | %s | %s |\n' "$(rps "$get")" "$(field "$get" 50%)" \
  "$(field "$get" 90%)" "$(field "$get" 99%)" "$(non2xx "$get")"
printf '| GET /jobs/{id} (RUNNING, with progress) | %s | %s | %s | %s | %s |\n' "$(rps "$getrun")" \
  "$(field "$getrun" 50%)" "$(field "$getrun" 90%)" "$(field "$getrun" 99%)" "$(non2xx "$getrun")"
printf '\njobs stored by the POST run: %s, in %s commits (fsyncs)\n' "$stored" "$commits"
