#!/usr/bin/env bash
# qjobs beside llm-compressor and AutoRound (pip, .venv-peers), measured in
# one run on this machine: bench/peer_bench.py says what is compared and how.
# Makes the peers' environment when it is missing (scripts/install-deps.sh
# --peers) and builds qjobs-worker when there is none.
#   bench/peer_bench.sh [--out DIR] [--models example,llama8b,qwen2]
#                       [--algos RTN,AWQ,GPTQ] [--tools qjobs,llmcompressor,autoround]
#                       [--samples N] [--seqlen N] [--layers N] [--timeout S]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh" --peers >&2
worker="${QJOBS_WORKER:-$root/build/bin/qjobs-worker}"
if [[ ! -x "$worker" ]]; then
  QJOBS_BUILD_TARGETS=qjobs-worker "$root/scripts/build.sh" >&2
fi
exec "${QJOBS_PEER_VENV:-$root/.venv-peers}/bin/python" "$root/bench/peer_bench.py" --worker "$worker" "$@"
