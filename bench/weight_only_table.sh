#!/usr/bin/env bash
# Perplexity table of the weight-only algorithms (RTN, AWQ, GPTQ, HQQ,
# Sequential MSE; ALGOS="RTN GPTQ" for fewer; NAME:KEY=VALUE adds a key to
# NAME's section, e.g. QuaRot:QUANTIZER=GPTQ) at W4 and W3 on one model: each job runs in qjobs-worker (standalone), and the
# packaged checkpoint is scored with `qjobs-worker ppl` (GPTQ/AWQ protocol).
# GROUP -1 is per output channel.
# Usage: [PPL_WINDOWS=N] [ALGOS="..."] bench/weight_only_table.sh MODEL_DIR CALIB_DATA EVAL_DATA GROUP [SEQLEN] [CALIB_N] [CALIB_SEQLEN]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "$1"); calib=$(realpath "$2"); evald=$(realpath "$3"); group=$4
seqlen=${5:-512}; calib_n=${6:-128}; calib_seqlen=${7:-512}
work=$(mktemp -d /tmp/qjobs-wq.XXXXXX)
trap 'rm -rf "$work"' EXIT
worker=build/bin/qjobs-worker
algos=${ALGOS:-RTN AutoAWQ GPTQ HQQ SequentialMSE}

ppl() { "$worker" ppl --checkpoint "$1" --data "$evald" --seqlen "$seqlen" --num-samples "${PPL_WINDOWS:--1}" --batch-size 4 | sed -n 's/.*"ppl":\([0-9.e+-]*\).*/\1/p'; }

base=$(ppl "$model")
declare -A result secs
for bits in 4 3; do
  # W4 scored from the packed checkpoint users get; W3 has no packed form.
  format=compressed-tensors; [[ $bits == 4 ]] || format=fake_quant
  for algo in $algos; do
    name=${algo%%:*}; extra=""
    [[ $algo == *:* ]] && extra="    ${algo#*:}" && extra=${extra/=/: }
    cat >"$work/$algo-$bits.yaml" <<YAML
MODEL: "$model"
ALGORITHM: $name
EXPORT_FORMAT: $format
DATA_PATH: "$calib"
calibration:
  n_samples: $calib_n
  seqlen: $calib_seqlen
llm:
  $name:
    W_BIT: $bits
    Q_GROUP_SIZE: $group
$extra
YAML
    start=$(date +%s.%N)
    "$worker" run "$work/$algo-$bits.yaml" --job-dir "$work/$algo-$bits" >/dev/null 2>&1 || { echo "$algo W$bits failed"; tail -5 "$work/$algo-$bits/logs/worker.log"; exit 1; }
    secs[$algo-$bits]=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
    result[$algo-$bits]=$(ppl "$work/$algo-$bits/model")
  done
done
echo
echo "model: $model"
echo "eval: $evald, seqlen $seqlen, windows: ${PPL_WINDOWS:-all}; calibration: $calib, $calib_n x $calib_seqlen; group $group"
echo
row() { printf '| %s ' "$@"; echo '|'; }
header=("bits" "fp"); rule=("---" "---"); header_s=("bits"); rule_s=("---")
for algo in $algos; do header+=("$algo"); rule+=("---"); header_s+=("$algo s"); rule_s+=("---"); done
row "${header[@]}"; row "${rule[@]}"
for bits in 4 3; do
  cells=("W$bits g$group" "$(printf %.3f "$base")")
  for algo in $algos; do cells+=("$(printf %.3f "${result[$algo-$bits]}")"); done
  row "${cells[@]}"
done
echo
echo "job wall time in seconds (load, calibrate, quantize, package):"
row "${header_s[@]}"; row "${rule_s[@]}"
for bits in 4 3; do
  cells=("W$bits")
  for algo in $algos; do cells+=("$(printf %.1f "${secs[$algo-$bits]}")"); done
  row "${cells[@]}"
done
