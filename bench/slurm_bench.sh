#!/usr/bin/env bash
# The Slurm backend's overhead against the local one, side by side: the same
# N RTN jobs (a small random Llama) on `--slots 2` and on a 2-CPU Slurm node
# (`--dispatcher slurm`). Prints, for each backend, the wall time of all N,
# the median and the largest time from submission to RUNNING, and from
# submission to SUCCEEDED, and the Slurm commands the server ran.
#   bench/slurm_bench.sh [N, default 20]
# As root: starts a local Slurm (scripts/slurm-local.sh) in its own folder
# unless SLURM_CONF is set.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
[[ -x build/bin/qjobs-server ]] || scripts/build.sh
work=$(mktemp -d /tmp/qjobs-slurm-bench.XXXXXX)
own_slurm=0
cleanup() {
  pkill -f "qjobs-server --listen 127.0.0.1:0 --user-data $work" 2>/dev/null || true
  [[ $own_slurm == 1 ]] && scripts/slurm-local.sh stop --dir "$work/slurm" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -z "${SLURM_CONF:-}" ]]; then
  eval "$(scripts/slurm-local.sh start --dir "$work/slurm" --cpus 2)"
  own_slurm=1
fi
build/bin/qjobs-worker init-model --out "$work/model" --hidden 128 --intermediate 352 --layers 4 --vocab 512 >/dev/null
spec="MODEL: \"$work/model\"
ALGORITHM: RTN
llm:
  RTN:
    W_BIT: 4
    Q_GROUP_SIZE: 32
"

run() {  # run NAME SERVER-ARGS...
  local name=$1
  shift
  local ud="$work/ud-$name"
  build/bin/qjobs-server --listen 127.0.0.1:0 --user-data "$ud" --log-level warn "$@" >"$work/$name.out" 2>"$work/$name.err" &
  for _ in $(seq 1 100); do grep -q listening "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  local url="http://127.0.0.1:$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$work/$name.out")"
  local t0
  t0=$(date +%s.%N)
  for _ in $(seq 1 "$n"); do
    curl -fsS -X POST --data-binary "$spec" -H 'Content-Type: application/yaml' "$url/jobs" >/dev/null
  done
  while [[ $(curl -fsS "$url/metrics" | sed -n 's/^qjobs_jobs{state="SUCCEEDED"} \(.*\)/\1/p') != "$n" ]]; do
    if curl -fsS "$url/metrics" | grep -qE '^qjobs_jobs\{state="FAILED"\} [1-9]'; then echo "$name: a job failed"; exit 1; fi
    sleep 0.2
  done
  local t1
  t1=$(date +%s.%N)
  # Per job, from the events: submission (first event) to RUNNING, and to SUCCEEDED.
  python3 - "$ud" "$name" "$t0" "$t1" "$url" <<'PY'
import json, os, statistics, sys, urllib.request
ud, name, t0, t1, url = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
to_run, to_done = [], []
for jid in os.listdir(os.path.join(ud, "jobs")):
    ev = [json.loads(l) for l in open(os.path.join(ud, "jobs", jid, "events.jsonl")) if l.strip()]
    ts = lambda pred: next(e["ts"] for e in ev if pred(e))
    created = ev[0]["ts"]
    to_run.append(ts(lambda e: e.get("state") == "RUNNING") - created)
    to_done.append(ts(lambda e: e.get("state") == "SUCCEEDED") - created)
metrics = urllib.request.urlopen(url + "/metrics").read().decode()
cmds = {l.split('"')[1]: int(float(l.split()[-1])) for l in metrics.splitlines() if l.startswith("qjobs_slurm_commands_total{")}
print(f"| {name} | {len(to_run)} | {t1 - t0:.1f} | {statistics.median(to_run):.2f} / {max(to_run):.2f} | "
      f"{statistics.median(to_done):.2f} / {max(to_done):.2f} | {cmds if cmds else '-'} |")
PY
  pkill -f "qjobs-server --listen 127.0.0.1:0 --user-data $ud" || true
}

echo "| backend | jobs | wall s | submit->RUNNING s (median / max) | submit->SUCCEEDED s (median / max) | Slurm commands |"
echo "|---|---|---|---|---|---|"
run local --slots 2
run slurm --dispatcher slurm --max-inflight "$n" --slurm-poll 0.5
