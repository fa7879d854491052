#!/usr/bin/env bash
# ctest Gguf.HuggingFaceReaderAndHandDecodedBlocks: the example model written
# as GGUF by `qjobs-worker gguf` (Q8_0 and Q4_0), read by @huggingface/gguf
# and checked block by block against model.safetensors (check.mjs).
#   tests/gguf/run.sh BUILD_BIN_DIR OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"; out="$2"
mkdir -p "$out"
if [[ ! -d "$here/node_modules/@huggingface/gguf" ]]; then
  if ! command -v npm >/dev/null || ! (cd "$here" && npm ci --no-audit --no-fund >/dev/null 2>&1); then
    echo "gguf check: npm packages unavailable (npm ci failed)"
    [[ "${CI:-}" == true ]] && exit 1
    exit 77
  fi
fi
for type in q8_0 q4_0; do
  "$bin/qjobs-worker" gguf --checkpoint "$root/examples/kjv-llama" --type "$type" --out "$out/kjv-llama-$type.gguf"
  node "$here/check.mjs" "$out/kjv-llama-$type.gguf" "$root/examples/kjv-llama" "$type"
done
