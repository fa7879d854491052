#!/usr/bin/env bash
# Real layer shapes on this CPU (not a test). A random model with Llama-3-8B
# layer shapes (hidden 4096, intermediate 14336, 32 heads, 8 KV heads, vocab
# 128256, bf16 on disk):
#   1. build/bin/calib_bench, 2 layers: RTN, AWQ and GPTQ at W4 g128 with
#      8 x 512 calibration tokens, streamed and spilled as the worker runs
#      them: seconds per block, the share of that time in GEMM operators
#      (timed by an operator observer), peak RSS against the checkpoint;
#   2. the same at 8 layers for RTN and GPTQ: the peak does not grow;
#   3. whole worker jobs (`qjobs-worker run`: load, quantize, package into
#      compressed-tensors, perplexity before and after) with RTN at 2 and 8
#      layers, through bench/gpu_check.sh --cpu --shape 8b: peak RSS of the
#      whole job against the checkpoint size.
#   bench/scale_bench.sh [BUILD_DIR] [OUT]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
out="${2:-$(mktemp -d /tmp/qjobs-scale.XXXXXX)}"
shape=(--hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256 --dtype bfloat16 --samples 8 --seqlen 512)
echo "== calibration, 2 layers"
"$build/bin/calib_bench" "${shape[@]}" --layers 2 --algos RTN,AutoAWQ,GPTQ
echo "== calibration, 8 layers"
"$build/bin/calib_bench" "${shape[@]}" --layers 8 --algos RTN,GPTQ
for l in 2 8; do
  echo "== whole RTN job, $l layers"
  bash "$root/bench/gpu_check.sh" --cpu --shape 8b --worker "$build/bin/qjobs-worker" --layers "$l" --samples 8 \
    --seqlen 512 --eval-windows 2 --algos RTN --budget-s 100000 --out "$out/l$l" | sed -n '/^| algorithm/,$p'
done
