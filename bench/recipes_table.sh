#!/usr/bin/env bash
# The recipes of configs/recipes/ side by side, as a user gets them: a
# qjobs-server on a loopback port over a fresh user_data, every recipe
# submitted unchanged with jobctl, then `jobctl compare` (like with like:
# one row per model, task and protocol) and the wall time of each job.
# Usage: bench/recipes_table.sh   (from anywhere; runs from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/qjobs-recipes.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
build/bin/qjobs-server --listen "127.0.0.1:$port" --user-data "$work/ud" --slots 1 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
export QJOBS_SERVER="http://127.0.0.1:$port"
until build/bin/jobctl list >/dev/null 2>&1; do sleep 0.2; done
ids=()
for f in configs/recipes/*.yaml; do ids+=("$(build/bin/jobctl submit "$f")"); done
for id in "${ids[@]}"; do build/bin/jobctl wait "$id" >/dev/null || echo "job $id did not succeed" >&2; done
build/bin/jobctl compare "${ids[@]}"
echo
echo "| job | recipe | seconds (started to finished) |"
echo "|---|---|---|"
for id in "${ids[@]}"; do
  build/bin/jobctl --json status "$id" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("| %s | %s | %.1f |" % (j["id"], j["name"], j["finished_at"] - j["started_at"]))'
done
