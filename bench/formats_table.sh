#!/usr/bin/env bash
# Perplexity and size on disk of the packed formats on one model: int4 g128
# (RTN, GPTQ), FP8 W8A8, NVFP4 and MXFP4 at W4A16 (RTN and GPTQ) and W4A4
# (RTN), and HQQ with its
# real-valued zero points (fake_quant) against the integer ones a packed
# export stores. Each job runs in qjobs-worker (standalone) with its default
# export (compressed-tensors) unless the row says fake_quant; the packaged
# checkpoint is read back and scored with `qjobs-worker ppl`.
# Usage: [PPL_WINDOWS=N] [FP4_SKIP=glob] bench/formats_table.sh MODEL_DIR CALIB_DATA EVAL_DATA [SEQLEN] [CALIB_N] [CALIB_SEQLEN]
# FP4_SKIP: Linears kept in full precision by the FP4 rows (for widths that
# are no multiple of the block, e.g. stories260K's 172-wide down_proj).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "$1"); calib=$(realpath "$2"); evald=$(realpath "$3")
seqlen=${4:-512}; calib_n=${5:-64}; calib_seqlen=${6:-512}
work=$(mktemp -d /tmp/qjobs-fmt.XXXXXX)
trap 'rm -rf "$work"' EXIT
worker=build/bin/qjobs-worker

ppl() { "$worker" ppl --checkpoint "$1" --data "$evald" --seqlen "$seqlen" --num-samples "${PPL_WINDOWS:--1}" --batch-size 4 | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p'; }
mib() { du -sb "$1" | awk '{ printf "%.3f", $1 / 1048576 }'; }

# Rows: name|ALGORITHM|EXPORT_FORMAT|section lines separated by \n.
skip=""
if [ -n "${FP4_SKIP:-}" ]; then skip='\n    LAYER_OVERRIDES:\n      - pattern: "'"$FP4_SKIP"'"\n        SKIP: true'; fi
rows=(
  "int4 g128 RTN|RTN|compressed-tensors|    W_BIT: 4\n    Q_GROUP_SIZE: 128"
  "int4 g128 GPTQ|GPTQ|compressed-tensors|    W_BIT: 4\n    Q_GROUP_SIZE: 128"
  "FP8 W8A8 (dynamic)|FP8|compressed-tensors|    ACT: dynamic"
  "NVFP4 W4A16|NVFP4|compressed-tensors|    ACT: none$skip"
  "NVFP4 W4A4|NVFP4|compressed-tensors|    ACT: dynamic$skip"
  "GPTQ NVFP4 W4A16|GPTQ|compressed-tensors|    W_FORMAT: nvfp4$skip"
  "GPTQ MXFP4 W4A16|GPTQ|compressed-tensors|    W_FORMAT: mxfp4$skip"
  "MXFP4 W4A16|MXFP4|compressed-tensors|    ACT: none$skip"
  "MXFP4 W4A4|MXFP4|compressed-tensors|    ACT: dynamic$skip"
  "HQQ W4 g64, real zeros|HQQ|fake_quant|    W_BIT: 4"
  "HQQ W4 g64, integer zeros (packed)|HQQ|compressed-tensors|    W_BIT: 4"
)
job() {  # job NAME ALGO FORMAT SECTION -> runs it in $work/NAME
  printf 'MODEL: "%s"\nALGORITHM: %s\nEXPORT_FORMAT: %s\nDATA_PATH: "%s"\ncalibration:\n  n_samples: %s\n  seqlen: %s\nllm:\n  %s:\n%b\n' \
    "$model" "$2" "$3" "$calib" "$calib_n" "$calib_seqlen" "$2" "$4" >"$work/$1.yaml"
  "$worker" run "$work/$1.yaml" --job-dir "$work/$1" >/dev/null 2>&1 || { echo "$1 failed"; tail -5 "$work/$1/logs/worker.log"; exit 1; }
}
# The original as a job writes it (same files; a model folder may hold more).
job orig RTN fake_quant '    W_BIT: 8'
echo "model: $model"
echo "eval: $evald, seqlen $seqlen, windows: ${PPL_WINDOWS:-all}; calibration: $calib, $calib_n x $calib_seqlen"
echo
echo "| recipe | export | ppl | size MiB | size / original |"
echo "|---|---|---|---|---|"
orig=$(mib "$work/orig/model")
printf '| original | - | %.4f | %s | 1.000 |\n' "$(ppl "$model")" "$orig"
i=0
for row in "${rows[@]}"; do
  IFS='|' read -r name algo fmt section <<<"$row"
  i=$((i + 1))
  job "$i" "$algo" "$fmt" "$section"
  size=$(mib "$work/$i/model")
  printf '| %s | %s | %.4f | %s | %.3f |\n' "$name" "$fmt" "$(ppl "$work/$i/model")" "$size" \
    "$(awk -v a="$size" -v b="$orig" 'BEGIN { print a / b }')"
done
