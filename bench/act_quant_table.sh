#!/usr/bin/env bash
# Perplexity table of activation and KV-cache quantization on one model:
# fp, SmoothQuant W8A8 (dynamic, static), QoQ W4A8KV4 (g128, gchn), W4A8KV8,
# FP8 W8A8 with and without FP8 KV, and the plain RTN W4A8KV4 baseline (no
# rotation, smoothing, reordering, clipping or GPTQ; float group scales).
# Each job runs in qjobs-worker (standalone); the fake-quant checkpoint is
# scored by `qjobs-worker ppl`, which simulates the recorded activation and
# KV quantization.
# Usage: [PPL_WINDOWS=N] bench/act_quant_table.sh MODEL_DIR CALIB_DATA EVAL_DATA [SEQLEN] [CALIB_N] [CALIB_SEQLEN]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "$1"); calib=$(realpath "$2"); evald=$(realpath "$3")
seqlen=${4:-512}; calib_n=${5:-64}; calib_seqlen=${6:-512}
work=$(mktemp -d /tmp/qjobs-aq.XXXXXX)
trap 'rm -rf "$work"' EXIT
worker=build/bin/qjobs-worker

ppl() { "$worker" ppl --checkpoint "$1" --data "$evald" --seqlen "$seqlen" --num-samples "${PPL_WINDOWS:--1}" --batch-size 4 | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p'; }

rows=()
declare -A result secs
run() {  # label algorithm yaml-lines...
  local label=$1 algo=$2; shift 2
  {
    printf 'MODEL: "%s"\nALGORITHM: %s\nDATA_PATH: "%s"\ncalibration:\n  n_samples: %s\n  seqlen: %s\nllm:\n  %s:\n' \
      "$model" "$algo" "$calib" "$calib_n" "$calib_seqlen" "$algo"
    for l in "$@"; do printf '    %s\n' "$l"; done
  } >"$work/job.yaml"
  local start; start=$(date +%s.%N)
  "$worker" run "$work/job.yaml" --job-dir "$work/$label" >/dev/null 2>&1 || { echo "$label failed"; tail -5 "$work/$label/logs/worker.log"; exit 1; }
  secs[$label]=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
  result[$label]=$(ppl "$work/$label/model")
  rows+=("$label")
  rm -rf "$work/$label/model"
}
base=$(ppl "$model")
run "W8A8 SmoothQuant dynamic (alpha 0.5)" SmoothQuant "ACT: dynamic"
run "W8A8 SmoothQuant static (alpha 0.5)" SmoothQuant "ACT: static"
run "W4A8KV4 QoQ g128" LMQuant "quant_type: g128"
run "W4A8KV4 QoQ gchn" LMQuant "quant_type: gchn" "quant.opts.dtype: uint4"
run "W4A8KV8 QoQ g128" LMQuant "quant_type: g128" "quant.opts.dtype: uint8"
run "W4A8KV8 QoQ gchn (as shipped)" LMQuant "quant_type: gchn"
run "W4A8KV4 RTN g128 baseline" LMQuant "quant_type: g128" "quant.enable_rotation: false" "quant.enable_smooth: false" \
  "quant.enable_reorder: false" "quant.wgts.progressive: false" "quant.wgts.enable_calib_range: false" "quant.wgts.enable_kernel_gptq: false"
run "W4A8KV4 QoQ g128 without rotation" LMQuant "quant_type: g128" "quant.enable_rotation: false"
run "W4A8KV4 QoQ g128 without GPTQ" LMQuant "quant_type: g128" "quant.wgts.enable_kernel_gptq: false"
run "FP8 W8A8 dynamic" FP8 "ACT: dynamic"
run "FP8 W8A8 static + FP8 KV" FP8 "ACT: static" "kv_cache: true"
echo
echo "model: $model"
echo "eval: $evald, seqlen $seqlen, windows: ${PPL_WINDOWS:-all}; calibration: $calib, $calib_n x $calib_seqlen"
echo
echo "| recipe | perplexity | vs fp | job s |"
echo "|---|---|---|---|"
printf '| fp | %.3f | | |\n' "$base"
for r in "${rows[@]}"; do
  printf '| %s | %.3f | %+.2f%% | %.1f |\n' "$r" "${result[$r]}" "$(awk -v a="${result[$r]}" -v b="$base" 'BEGIN { print (a / b - 1) * 100 }')" "${secs[$r]}"
done
