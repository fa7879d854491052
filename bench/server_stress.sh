#!/usr/bin/env bash
# The server's responsiveness under the loads of issue 11, item 9:
#   tail   GET /jobs/{id}/logs?tail=5 on a 256 MiB log (20 requests)
#   mixed  GET /jobs/{id} latency (4 connections) while 16 connections submit
#   follow GET /healthz latency while 200 clients hold logs?follow=1 open and
#          never read
# Workers are a stand-in that sleeps (one slot), so the numbers are the
# server's. Pass another qjobs-server binary to compare a peer build side by
# side (e.g. one built from an older commit).
# Usage: bench/server_stress.sh [SERVER_BIN] [seconds per wrk run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin/qjobs-server}
secs=${2:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

work=$(mktemp -d /tmp/qjobs-stress.XXXXXX)
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  [[ -n "${followers_pid:-}" ]] && kill "$followers_pid" 2>/dev/null || true
  pkill -f "$work/sleeper" || true
  rm -rf "$work"
}
trap cleanup EXIT
printf '#!/bin/sh\nexec sleep 600\n' >"$work/sleeper"
chmod +x "$work/sleeper"
"$bin" --listen 127.0.0.1:0 --user-data "$work/ud" --slots 1 --worker "$work/sleeper" --log-level warn \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$work/server.out")
url="http://127.0.0.1:$port"
spec=$'MODEL: "/models/bench"\nALGORITHM: RTN\nllm:\n  RTN:\n    W_BIT: 4\n'
id=$(curl -fsS --data-binary "$spec" "$url/jobs" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
# (yes ends on SIGPIPE when head has enough: not a failure here)
(set +o pipefail; yes "2026-12-01T20:00:00.000 info [worker] a log line of some sixty characters, repeated" |
  head -c 268435456 >"$work/ud/jobs/$id/logs/worker.log")

# tail=5 on the 256 MiB log.
times=()
for _ in $(seq 1 20); do times+=("$(curl -fsS -o /dev/null -w '%{time_total}' "$url/jobs/$id/logs?tail=5")"); done
tail_med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n '10p')
tail_max=$(printf '%s\n' "${times[@]}" | sort -n | tail -1)

# GET /jobs/{id} while 16 connections submit.
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "MODEL: \"/models/bench\"\nALGORITHM: RTN\n"
LUA
wrk -t1 -c16 -d"${secs}s" -s "$work/post.lua" "$url/jobs" >"$work/post.txt" &
post_pid=$!
mixed=$(wrk -t1 -c4 -d"${secs}s" --latency "$url/jobs/$id")
wait $post_pid

# /healthz while 200 followers never read.
python3 - "$port" "$id" <<'PY' &
import socket, sys, time
port, job = int(sys.argv[1]), sys.argv[2]
socks = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /jobs/{job}/logs?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    socks.append(s)
time.sleep(600)
PY
followers_pid=$!
sleep 2
follow=$(wrk -t1 -c4 -d"${secs}s" --latency "$url/healthz")
kill $followers_pid 2>/dev/null || true
followers_pid=

field() { echo "$1" | awk -v k="$2" '$1 == k {print $2}'; }
maxlat() { echo "$1" | awk '/Latency/ && !/Distribution/ {print $4; exit}'; }
rps() { echo "$1" | awk '/Requests\/sec/ {print $2}'; }
printf '\nserver: %s (2 cores shared with the load generators)\n\n' "$bin"
printf '| load | requests | p50 | p99 | max |\n|---|---|---|---|---|\n'
printf '| logs?tail=5 on a 256 MiB log | 20 | %ss | | %ss |\n' "$tail_med" "$tail_max"
printf '| GET /jobs/{id} while 16 connections submit (%s sub/s) | %s/s | %s | %s | %s |\n' \
  "$(rps "$(cat "$work/post.txt")")" "$(rps "$mixed")" "$(field "$mixed" 50%)" "$(field "$mixed" 99%)" "$(maxlat "$mixed")"
printf '| GET /healthz with 200 non-reading log followers | %s/s | %s | %s | %s |\n' \
  "$(rps "$follow")" "$(field "$follow" 50%)" "$(field "$follow" 99%)" "$(maxlat "$follow")"
