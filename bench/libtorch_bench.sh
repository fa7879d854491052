#!/usr/bin/env bash
# libtorch 2.x against an older build, on this machine, in one run: the same
# commands through each worker, one after the other.
#   bench/libtorch_bench.sh [OLD_WORKER] [OUT]
# Workers: build/bin/qjobs-worker with fused attention (scaled_dot_product_
# attention, the default) and with --attention eager, and OLD_WORKER when
# given (a qjobs-worker built before this change against Debian's libtorch
# 1.13: `git worktree add /tmp/old a47ab03` and a -DQJOBS_WORKER_ONLY=ON
# build there with Debian's libtorch-dev; where a CUDA toolkit is installed,
# that commit's jobs/model/device.cpp needs its CUDA branch turned off by hand
# (its __has_include test mistook the toolkit's headers for a CUDA
# libtorch's). For each:
#   1. perplexity throughput on a Llama-shaped random model (hidden 1024,
#      8 layers, 16 heads / 4 KV heads, intermediate 2816; 4 windows of 1024
#      tokens), float32 and bfloat16;
#   2. the example model's held-out perplexity (examples/kjv-llama, 256-token
#      windows) and its tokens per second;
#   3. the example job (examples/rtn-demo.yaml's RTN W4 g32 with its
#      perplexity) and GPTQ and AWQ W4 g128 jobs on the random model (2 layers,
#      16 x 512 calibration tokens): perplexities and stage seconds.
# Prints one markdown table per part; everything also lands in OUT.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
new="$root/build/bin/qjobs-worker"
old="${1:-}"
out="${2:-$(mktemp -d /tmp/qjobs-libtorch-bench.XXXXXX)}"
mkdir -p "$out"
export CUDA_VISIBLE_DEVICES=""
kjv="$root/examples/kjv-llama"
data="$root/examples/data/kjv"

workers=("2.x-fused|$new|--attention fused" "2.x-eager|$new|--attention eager")
[[ -n "$old" ]] && workers+=("old|$old|")
"$new" --version | head -2
[[ -n "$old" ]] && echo "old worker: $old"

model="$out/model"
if [[ ! -d "$model" ]]; then
  "$new" init-model --out "$model" --hidden 1024 --intermediate 2816 --layers 8 --heads 16 --kv-heads 4 --vocab 1024 \
    --dtype float32 --seed 3 >/dev/null
  cp "$kjv/tokenizer.json" "$kjv/tokenizer_config.json" "$model/"
fi
small="$out/model2"
if [[ ! -d "$small" ]]; then
  "$new" init-model --out "$small" --hidden 1024 --intermediate 2816 --layers 2 --heads 16 --kv-heads 4 --vocab 1024 \
    --dtype bfloat16 --seed 4 >/dev/null
  cp "$kjv/tokenizer.json" "$kjv/tokenizer_config.json" "$small/"
fi

field() { python3 -c 'import json, sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }

echo
echo "| worker | model | dtype | tokens/s | ppl |"
echo "|---|---|---|---|---|"
for w in "${workers[@]}"; do
  IFS='|' read -r name bin flags <<<"$w"
  for dt in float32 bfloat16; do
    # shellcheck disable=SC2086
    r="$("$bin" ppl --checkpoint "$model" --data "$data/test.jsonl" --seqlen 1024 --num-samples 4 --dtype "$dt" $flags 2>/dev/null)"
    echo "$r" > "$out/ppl-$name-$dt.json"
    echo "| $name | random 1024x8 | $dt | $(field tokens_per_s <<<"$r" | xargs printf '%.0f') | $(field ppl <<<"$r") |"
  done
  # shellcheck disable=SC2086
  r="$("$bin" ppl --checkpoint "$kjv" --data "$data/test.jsonl" --seqlen 256 $flags 2>/dev/null)"
  echo "$r" > "$out/ppl-$name-kjv.json"
  echo "| $name | kjv-llama | float32 | $(field tokens_per_s <<<"$r" | xargs printf '%.0f') | $(field ppl <<<"$r") |"
done

job_spec() {  # MODEL ALGO GROUP
  cat <<YAML
MODEL: "$1"
ALGORITHM: $2
llm:
  $2:
    W_BIT: 4
    Q_GROUP_SIZE: $3
    ZERO_POINT: true
calibration:
  data_path: "$data/calib.jsonl"
  n_samples: 16
  seqlen: 512
eval:
  tasks:
    - type: ppl
      name: kjv
      data_path: "$data/test.jsonl"
      seqlen: 256
      num_samples: 16
YAML
}
echo
echo "| worker | job | ppl before | ppl after | quantize s | package s | evaluate s |"
echo "|---|---|---|---|---|---|---|"
for w in "${workers[@]}"; do
  IFS='|' read -r name bin flags <<<"$w"
  [[ "$name" == 2.x-eager ]] && continue  # jobs always run the default (fused) path
  for job in "demo|$kjv|RTN|32" "gptq|$small|GPTQ|128" "awq|$small|AutoAWQ|128"; do
    IFS='|' read -r jname m algo g <<<"$job"
    if [[ "$jname" == demo ]]; then cp "$root/examples/rtn-demo.yaml" "$out/$name-$jname.yaml"
      sed -i "s#\"examples/#\"$root/examples/#g" "$out/$name-$jname.yaml"
    else job_spec "$m" "$algo" "$g" > "$out/$name-$jname.yaml"; fi
    rm -rf "$out/job-$name-$jname"
    "$bin" run "$out/$name-$jname.yaml" --job-dir "$out/job-$name-$jname" >/dev/null 2>&1 || true
    python3 - "$out/job-$name-$jname/report.json" "$name" "$jname" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except OSError:
    print(f"| {sys.argv[2]} | {sys.argv[3]} | FAILED | | | | |"); sys.exit()
ev, st = r["eval"], r["stage_seconds"]
task = next(t for t, v in ev["quantized"].items() if "ppl" in v)
print(f"| {sys.argv[2]} | {sys.argv[3]} | {ev['original'][task]['ppl']:.6f} | {ev['quantized'][task]['ppl']:.6f} | "
      f"{st.get('quantize', 0):.1f} | {st.get('package', 0):.1f} | {st.get('evaluate', 0):.1f} |")
PY
  done
done
echo "(files in $out)"
