#!/usr/bin/env bash
# The demo: installs, builds, starts qjobs-server on ./user_data, submits the
# example job with jobctl, waits with progress, and prints where the result is.
# It installs and builds only what it runs (the server, the worker, jobctl):
# the test command (scripts/test.sh) installs and builds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh --runtime
QJOBS_BUILD_TARGETS="qjobs-server qjobs-worker jobctl" scripts/build.sh

port=${QJOBS_DEMO_PORT:-8080}
export QJOBS_SERVER="http://127.0.0.1:$port"
mkdir -p user_data

if ! curl -fsS "$QJOBS_SERVER/healthz" >/dev/null 2>&1; then
  echo "demo: starting qjobs-server on 127.0.0.1:$port (log: user_data/server.log)"
  nohup build/bin/qjobs-server --listen "127.0.0.1:$port" --user-data user_data --slots 1 \
    >>user_data/server.log 2>&1 &
  for _ in $(seq 1 50); do
    curl -fsS "$QJOBS_SERVER/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi

id=$(build/bin/jobctl submit examples/rtn-demo.yaml)
echo "demo: submitted job $id"
build/bin/jobctl wait "$id"
echo
build/bin/jobctl status "$id"
echo
echo "demo: the quantized model is in user_data/jobs/$id/model/"
echo "demo: the report is user_data/jobs/$id/report.md:"
echo
head -20 "user_data/jobs/$id/report.md"
echo "demo: $(($(date +%s) - start)) s from the start of this script to the report"
echo "demo: the server keeps running; stop it with: pkill -f 'qjobs-server --listen 127.0.0.1:$port'"
