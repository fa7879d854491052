#!/usr/bin/env bash
# The estimate before a job starts against what the job took (not a test):
# a random model of real layer shapes, a server on a loopback port, and for
# each algorithm the dry run's estimate (`jobctl validate --json`) and then
# the job itself (`jobctl submit --wait`), whose report.json holds the
# estimate made at submission beside what it measured. Prints one table:
# time (calibration and evaluation), peak host memory, peak disk in the job
# folder and the output, estimated and measured, with their ratio.
#   bench/estimate_table.sh [--build DIR] [--shape mid|8b] [--layers N]
#                           [--samples N] [--seqlen N] [--algos "RTN AutoAWQ GPTQ"]
#                           [--out DIR] [--reuse-jobs] [--recipes]
# --recipes: the shipped recipes (configs/recipes/*.yaml) as their files
# have them, with MODEL, DATA_PATH and the calibration windows set to this
# run's (`jobctl --set`), instead of the RTN/AWQ/GPTQ specs below.
# --reuse-jobs: with an OUT of an earlier run, estimate again (same model,
# specs and kept rates) against the jobs that ran then, without rerunning them.
# mid: hidden 2048, intermediate 7168, 16 heads, 4 KV heads, vocab 32000;
# 8b: Llama-3-8B's (4096, 14336, 32, 8, 128256). bf16 on disk.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build" shape_name=mid layers=2 samples=8 seqlen=512 algos="RTN AutoAWQ GPTQ" out="" reuse=0 recipes=0
while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --shape) shape_name="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --seqlen) seqlen="$2"; shift 2 ;;
    --algos) algos="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --reuse-jobs) reuse=1; shift ;;
    --recipes) recipes=1; shift ;;
    *) echo "estimate_table: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$shape_name" in
  mid) shape=(--hidden 2048 --intermediate 7168 --heads 16 --kv-heads 4 --vocab 32000) ;;
  8b) shape=(--hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256) ;;
  *) echo "estimate_table: --shape mid or 8b" >&2; exit 2 ;;
esac
out="${out:-$(mktemp -d /tmp/qjobs-estimate.XXXXXX)}"
mkdir -p "$out"
model="$out/model"
if [[ ! -f "$model/config.json" ]]; then
  "$build/bin/qjobs-worker" init-model --out "$model" "${shape[@]}" --layers "$layers" --dtype bfloat16 >/dev/null
  cp "$root/examples/kjv-llama/tokenizer.json" "$root/examples/kjv-llama/tokenizer_config.json" "$model/"
fi
cat "$root/examples/data/kjv/calib.jsonl" "$root/examples/data/kjv/test.jsonl" > "$out/calib.jsonl"

port=$((20000 + RANDOM % 20000))
"$build/bin/qjobs-server" --listen "127.0.0.1:$port" --user-data "$out/ud" --slots 1 > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
export QJOBS_SERVER="http://127.0.0.1:$port"
for _ in $(seq 100); do "$build/bin/jobctl" list >/dev/null 2>&1 && break; sleep 0.1; done

if ((recipes)); then
  algos=""
  for f in "$root"/configs/recipes/*.yaml; do
    name=$(basename "$f" .yaml)
    algos+="$name "
    sets=(--set "MODEL=$model" --set "calibration.n_samples=$samples" --set "calibration.seqlen=$seqlen")
    grep -q '^DATA_PATH:' "$f" && sets+=(--set "DATA_PATH=$out/calib.jsonl")
    "$build/bin/jobctl" --json validate "$f" "${sets[@]}" > "$out/$name.validate.json" || true
    if ((reuse)) && [[ -f "$out/$name.id" ]]; then continue; fi
    id=$(cd "$root" && "$build/bin/jobctl" submit "$f" "${sets[@]}" --wait 2>"$out/$name.submit.err" | head -1) || true
    echo "$id" > "$out/$name.id"
    echo "estimate_table: $name done ($id)" >&2
  done
fi

for algo in $( ((recipes)) || echo "$algos"); do
  case $algo in
    RTN) fmt="compressed-tensors"; extra="" ;;
    AutoAWQ) fmt="awq"; extra="    N_GRID: 20"$'\n'"    CLIP: true" ;;
    GPTQ) fmt="gptq"; extra="    BLOCK_SIZE: 128" ;;
    *) echo "estimate_table: unknown algorithm $algo" >&2; exit 2 ;;
  esac
  cat > "$out/$algo.yaml" <<YAML
MODEL: "$model"
ALGORITHM: $algo
EXPORT_FORMAT: $fmt
llm:
  $algo:
    W_BIT: 4
    Q_GROUP_SIZE: 128
    ZERO_POINT: true
$extra
calibration:
  data_path: "$out/calib.jsonl"
  n_samples: $samples
  seqlen: $seqlen
eval:
  tasks:
    - type: ppl
      name: kjv
      data_path: "$root/examples/data/kjv/test.jsonl"
      seqlen: $seqlen
      num_samples: 2
      batch_size: 1
YAML
  "$build/bin/jobctl" --json validate "$out/$algo.yaml" > "$out/$algo.validate.json"
  if ((reuse)) && [[ -f "$out/$algo.id" ]]; then continue; fi
  id=$("$build/bin/jobctl" submit "$out/$algo.yaml" --wait 2>"$out/$algo.submit.err" | head -1) || true
  echo "$id" > "$out/$algo.id"
  echo "estimate_table: $algo done ($id)" >&2
done

python3 - "$out" "$layers" "$samples" "$seqlen" "$shape_name" $algos <<'PY'
import json, os, sys
out, layers, samples, seqlen, shape = sys.argv[1:6]
algos = sys.argv[6:]
mib = 1024 * 1024
rates = None
rows = []
for a in algos:
    job = open(os.path.join(out, a + ".id")).read().strip()
    path = os.path.join(out, "ud", "jobs", job, "report.json")
    if not job or not os.path.exists(path):
        rows.append(f"| {a} | job failed: see {out}/{a}.submit.err |")
        continue
    r = json.load(open(path))
    # The dry run's estimate (it measured the rates; with --reuse-jobs, made
    # again by this build against the jobs of the earlier run), beside what
    # the job's report measured.
    if not isinstance(r.get("estimate"), dict) or "measured" not in r["estimate"]:
        rows.append(f"| {a} | the report has no estimate |")
        continue
    m = r["estimate"]["measured"]
    try:
        e = json.load(open(os.path.join(out, a + ".validate.json")))["estimate"]
    except (OSError, ValueError, KeyError):
        e = r["estimate"]
    rates = e["rates"]
    def cell(est, got, unit, fmt):
        if est is None or got is None:
            return "- | - | -"
        return f"{est / unit:{fmt}} | {got / unit:{fmt}} | {got / est:.2f}"
    rows.append(f"| {a} | " + " | ".join([
        cell(e["seconds"], m["seconds"], 1, ".1f"),
        cell(e["host_bytes"], m["host_bytes"], mib, ".0f"),
        cell(e["disk_bytes"], m["disk_bytes"], mib, ".0f"),
        cell(e["output_bytes"], m["output_bytes"], mib, ".0f")]) + " |")
print(f"shape {shape}, {layers} layers, bf16 on disk, calibration {samples} x {seqlen} tokens, 2 x {seqlen} eval windows")
if rates:
    print(f"rates measured by the worker on {rates['device']}: float32 GEMM {rates['gemm_gflops']:.0f} GFLOP/s, "
          f"{rates['elementwise_per_s'] / 1e9:.2f} G elementwise passes/s")
print("| algorithm or recipe | est. s | measured s | ratio | est. host MiB | measured | ratio | est. disk MiB | measured | ratio "
      "| est. output MiB | measured | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
PY
