#!/usr/bin/env bash
# ctest Gguf.LlamaCppReaderAndDecoder: the example model written as GGUF by
# `qjobs-worker gguf` (Q8_0 and Q4_0), read by llama.cpp's own Python reader
# and decoder (pip `gguf`, in the project's virtual environment) and checked
# block by block against model.safetensors (check.py).
#   tests/gguf/run.sh BUILD_BIN_DIR OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"; out="$2"
mkdir -p "$out"
python="${QJOBS_VENV:-$root/.venv}/bin/python"
if ! "$python" -c 'import gguf, numpy' 2>/dev/null; then
  echo "gguf check: $python cannot import gguf (scripts/install-deps.sh installs it)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
for type in q8_0 q4_0; do
  "$bin/qjobs-worker" gguf --checkpoint "$root/examples/kjv-llama" --type "$type" --out "$out/kjv-llama-$type.gguf"
  "$python" "$here/check.py" "$out/kjv-llama-$type.gguf" "$root/examples/kjv-llama" "$type"
done
