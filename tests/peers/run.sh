#!/usr/bin/env bash
# ctest Peers.ExampleModelBesideLlmCompressor: bench/peer_bench.py on the
# example model, qjobs and llm-compressor (pip, .venv-peers) calibrating on
# the same token windows at the same schemes (RTN, AWQ, GPTQ; W4 g32), every
# quantized model scored by one evaluator (transformers) on the same
# held-out windows. Checks that both tools ran, that no scheme moved the
# perplexity by more than 5%, and that qjobs' perplexity is at most 1% above
# llm-compressor's at each scheme (its figures, not qjobs', are the bar).
#   tests/peers/run.sh BUILD_BIN_DIR OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$1"; out="$2"
rm -rf "$out"; mkdir -p "$out"
python="${QJOBS_PEER_VENV:-$root/.venv-peers}/bin/python"
if ! "$python" -c 'import llmcompressor, transformers, safetensors' 2>/dev/null; then
  echo "peers: $python cannot import llmcompressor (scripts/install-deps.sh --peers installs it)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
OMP_NUM_THREADS=1 "$python" "$root/bench/peer_bench.py" --worker "$bin/qjobs-worker" --out "$out" --models example \
  --samples 16 --seqlen 256 --eval-windows 8 --algos RTN,AWQ,GPTQ --tools qjobs,llmcompressor
"$python" - "$out/results.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
base = next(r["ppl"] for r in rows if r["algo"] == "original")
bad = []
for algo in ("RTN", "AWQ", "GPTQ"):
    got = {r["tool"]: r for r in rows if r["algo"] == algo}
    for tool in ("qjobs", "llmcompressor"):
        r = got.get(tool)
        if r is None or r.get("exit") != 0 or "ppl" not in r:
            bad.append(f"{algo} {tool}: did not run to a perplexity ({r})")
        elif not base * 0.98 <= r["ppl"] <= base * 1.05:
            bad.append(f"{algo} {tool}: perplexity {r['ppl']:.4f} against the original's {base:.4f}")
    if not bad:
        q, p = got["qjobs"]["ppl"], got["llmcompressor"]["ppl"]
        print(f"{algo}: qjobs {q:.4f}, llm-compressor {p:.4f} (original {base:.4f})")
        if q > p * 1.01:
            bad.append(f"{algo}: qjobs' perplexity {q:.4f} is more than 1% above llm-compressor's {p:.4f}")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
PY
