#!/usr/bin/env bash
# Runs one job per algorithm x export form on the example model with the
# worker alone (no server) and prints the sha256 of every file of each
# packed checkpoint: run it before and after a change that must not change
# outputs (a refactor) and diff the two listings.
#
#   scripts/export-digests.sh [WORKER] > digests.txt
#
# WORKER defaults to build/bin/qjobs-worker. Calibration is cut to 8 windows
# of 128 tokens and evaluation is left out, so the whole matrix takes a few
# minutes on two cores; VERIFY is off (the reference loaders are not what
# is compared). A job that fails prints FAILED with its last log lines.
set -euo pipefail
cd "$(dirname "$0")/.."
worker="$(realpath "${1:-build/bin/qjobs-worker}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name | ALGORITHM | EXPORT_FORMAT | the algorithm section, one flow mapping
cases=(
  "rtn-fake|RTN|fake_quant|{W_BIT: 4, Q_GROUP_SIZE: 128}"
  "rtn-ct|RTN|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 128}"
  "rtn-ct-w8-channel|RTN|compressed-tensors|{W_BIT: 8, Q_GROUP_SIZE: -1, ZERO_POINT: false}"
  "rtn-awq|RTN|awq|{W_BIT: 4, Q_GROUP_SIZE: 32}"
  "rtn-gptq|RTN|gptq|{W_BIT: 4, Q_GROUP_SIZE: 32, ZERO_POINT: false}"
  "rtn-gguf-q4|RTN|gguf|{W_BIT: 4, Q_GROUP_SIZE: 32, ZERO_POINT: false}"
  "rtn-gguf-q8|RTN|gguf|{W_BIT: 8, Q_GROUP_SIZE: 32, ZERO_POINT: false}"
  "rtn-onnx|RTN|onnx|{W_BIT: 4, Q_GROUP_SIZE: 32}"
  "rtn-mixed-ct|RTN|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 32, LAYER_OVERRIDES: [{pattern: 'model.layers.0.*', W_BIT: 8}, {pattern: '*.mlp.down_proj', SKIP: true}]}"
  "awq-ct|AutoAWQ|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 128}"
  "awq-awq|AutoAWQ|awq|{W_BIT: 4, Q_GROUP_SIZE: 32}"
  "awq-fake-overrides|AutoAWQ|fake_quant|{W_BIT: 4, Q_GROUP_SIZE: 64, LAYER_OVERRIDES: [{pattern: '*.self_attn.o_proj', W_BIT: 8, Q_GROUP_SIZE: 32}]}"
  "gptq-gptq|GPTQ|gptq|{W_BIT: 4, Q_GROUP_SIZE: 32}"
  "gptq-gptq-actorder|GPTQ|gptq|{W_BIT: 4, Q_GROUP_SIZE: 32, DESC_ACT: true}"
  "gptq-ct-actorder|GPTQ|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 32, DESC_ACT: true}"
  "gptq-ct-mixed|GPTQ|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 32, ZERO_POINT: false, LAYER_OVERRIDES: [{pattern: 'model.layers.0.*', W_BIT: 8}, {pattern: '*.mlp.down_proj', W_BIT: 8}]}"
  "gptq-nvfp4|GPTQ|compressed-tensors|{W_FORMAT: nvfp4}"
  "seqmse-onnx|SequentialMSE|onnx|{W_BIT: 4, Q_GROUP_SIZE: 32, ZERO_POINT: false, NUM_CANDIDATES: 5}"
  "seqmse-a16-ct|SequentialMSE|fake_quant|{W_BIT: 4, Q_GROUP_SIZE: 32, A_BIT: 16, NUM_CANDIDATES: 5}"
  "hqq-fake|HQQ|fake_quant|{W_BIT: 3, Q_GROUP_SIZE: 64}"
  "hqq-ct|HQQ|compressed-tensors|{W_BIT: 4, Q_GROUP_SIZE: 32}"
  "sq-ct|SmoothQuant|compressed-tensors|{alpha: 0.5, LAYER_OVERRIDES: [{pattern: '*.mlp.down_proj', SKIP: true}]}"
  "lmquant-g128|LMQuant|fake_quant|{quant_type: g128}"
  "lmquant-gchn|LMQuant|compressed-tensors|{quant_type: gchn}"
  "lmquant-awq|LMQuant|compressed-tensors|{quant_type: awq}"
  "lmquant-gptq|LMQuant|fake_quant|{quant_type: gptq}"
  "lmquant-sq|LMQuant|compressed-tensors|{quant_type: sq_static}"
  "fp8-kv|FP8|compressed-tensors|{ACT: static, kv_cache: true}"
  "nvfp4|NVFP4|compressed-tensors|{ACT: dynamic}"
  "mxfp4|MXFP4|compressed-tensors|{}"
)
for c in "${cases[@]}"; do
  IFS='|' read -r name algo format section <<<"$c"
  spec="$work/$name.yaml"
  cat >"$spec" <<SPEC
MODEL: "$PWD/examples/kjv-llama"
DATA_PATH: "$PWD/examples/data/kjv/calib.jsonl"
ALGORITHM: "$algo"
EXPORT_FORMAT: "$format"
VERIFY: false
ONNX_SEQ_LEN: 16
ONNX_CONTEXT_LEN: 64
calibration: {n_samples: 8, seqlen: 128}
llm:
  $algo: $section
SPEC
  if ! "$worker" run "$spec" --job-dir "$work/$name" >"$work/$name.out" 2>&1; then
    echo "$name FAILED"
    tail -5 "$work/$name.out" | sed 's/^/  /'
    continue
  fi
  (cd "$work/$name/model" && find . -type f | LC_ALL=C sort | xargs sha256sum) | sed "s|^|$name |"
done
