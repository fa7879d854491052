#!/usr/bin/env bash
# The worker on a GPU, end to end, in about 8 minutes:
#   1. builds qjobs-worker against the machine's Python torch (CUDA), with the
#      other dependencies taken from .deb files unpacked by dpkg -x (--debs);
#   2. checks the worker's libtorch is the pinned wheel (scripts/
#      requirements.txt) and that CUDA is usable, then `qjobs-worker logits`
#      on the reference models against the expected logits, with fused and
#      with eager attention (float32, TF32 off: max|diff|/max|ref| <= 1e-4);
#   3. measures the device's GEMM rate (`qjobs-worker gemm`);
#   4. generates a random model with Llama-3-8B layer shapes (hidden 4096,
#      intermediate 14336, 32 heads, 8 KV heads, vocab 128256, bf16) on the
#      machine and runs RTN, AWQ and GPTQ W4 g128 jobs on it with 128 x 512
#      calibration tokens and a perplexity evaluation, each through
#      `qjobs-worker run` as the server would;
#   5. prints seconds per block, total, peak GPU and host memory and the
#      GEMM-bound floor of each algorithm, and writes them to OUT/summary.json.
# With --cpu it does the same on this machine's CPU build at small shapes
# (what the test suite runs so that the script does not rot).
#
#   bench/gpu_check.sh [--cpu] [--worker BIN] [--torch-dir DIR] [--debs DIR]
#                      [--layers N] [--samples N] [--seqlen N] [--out DIR]
#                      [--reference DIR] [--budget-s S] [--shape 8b|small]
#                      [--algos "RTN AutoAWQ GPTQ"] [--eval-windows N]
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cpu=0 worker="" torch_dir="" debs="" layers="" samples="" seqlen="" out="" budget_s=420 shape_name="" algos="RTN AutoAWQ GPTQ"
eval_windows=8
reference="${QJOBS_REFERENCE_DIR:-$root/../shared/reference}"
while (($#)); do
  case "$1" in
    --cpu) cpu=1; shift ;;
    --worker) worker="$2"; shift 2 ;;
    --torch-dir) torch_dir="$2"; shift 2 ;;
    --debs) debs="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --seqlen) seqlen="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --reference) reference="$2"; shift 2 ;;
    --budget-s) budget_s="$2"; shift 2 ;;
    --shape) shape_name="$2"; shift 2 ;;
    --algos) algos="$2"; shift 2 ;;
    --eval-windows) eval_windows="$2"; shift 2 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
out="${out:-$(mktemp -d /tmp/qjobs-gpu-check.XXXXXX)}"
mkdir -p "$out"
start=$(date +%s)
log() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

# Shapes: Llama-3-8B's on a GPU, a small model on the CPU (unless --shape).
shape_name="${shape_name:-$( ((cpu)) && echo small || echo 8b)}"
if [[ "$shape_name" == 8b ]]; then
  shape=(--hidden 4096 --intermediate 14336 --heads 32 --kv-heads 8 --vocab 128256)
else
  shape=(--hidden 256 --intermediate 768 --heads 4 --kv-heads 2 --vocab 2048)
fi
if ((cpu)); then
  layers="${layers:-2}" samples="${samples:-8}" seqlen="${seqlen:-64}"
  export CUDA_VISIBLE_DEVICES=""
else
  layers="${layers:-32}" samples="${samples:-128}" seqlen="${seqlen:-512}"
  export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
fi

# 1. The worker.
if [[ -z "$worker" ]]; then
  prefix=""
  if [[ -n "$debs" ]]; then
    prefix="$out/prefix"
    mkdir -p "$prefix"
    for d in "$debs"/*.deb; do dpkg -x "$d" "$prefix"; done
    multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
    export LD_LIBRARY_PATH="$prefix/usr/lib/$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    log "unpacked $(ls "$debs"/*.deb | wc -l) .deb files into $prefix"
  fi
  args=(--build-dir "$out/build")
  [[ -n "$prefix" ]] && args+=(--prefix "$prefix")
  [[ -n "$torch_dir" ]] && args+=(--torch-dir "$torch_dir")
  log "building qjobs-worker"
  worker="$("$root/scripts/build-worker.sh" "${args[@]}" | tail -1)"
fi
worker="$(cd "$(dirname "$worker")" && pwd)/$(basename "$worker")"
log "worker: $worker"
# A worker built elsewhere and carried here (--worker) runs on this machine's
# torch wheel: its libtorch and CUDA libraries come before the paths it was
# linked with, which need not exist here.
if torch_pkg="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)"; then
  nv="$(ls -d "$torch_pkg"/../nvidia/cu*/lib 2>/dev/null | paste -sd: -)"
  export LD_LIBRARY_PATH="$torch_pkg/lib${nv:+:$nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# The libtorch it runs on must be the wheel CI builds with
# (scripts/requirements.txt), and on a GPU run CUDA must be usable.
"$worker" --version | tee "$out/version.txt"
want_torch="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$root/scripts/requirements.txt")"
have_torch="$(sed -n 's/^libtorch \([0-9.]*\).*/\1/p' "$out/version.txt")"
if [[ "$have_torch" != "$want_torch" ]]; then
  log "the worker runs on libtorch $have_torch, not the pinned $want_torch (scripts/requirements.txt)"
  exit 1
fi
if ((!cpu)) && ! grep -q '^CUDA usable' "$out/version.txt"; then
  log "CUDA is not usable on this machine: $(grep '^CUDA not usable' "$out/version.txt")"
  exit 1
fi

py() { python3 - "$@"; }

# 2. Reference logits.
: > "$out/reference.jsonl"
if [[ -d "$reference/models" ]]; then
  for m in "$reference"/models/*/; do
    m="${m%/}"; name="$(basename "$m")"
    [[ -f "$m/expected.safetensors" ]] || continue
    py "$m/expected.safetensors" input_ids "$out/$name.tokens.json" <<'PY'
import json, struct, sys
from array import array
path, key, dst = sys.argv[1:4]
b = open(path, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])[key]
s, e = h["data_offsets"]
a = array("q"); a.frombytes(b[8 + n + s:8 + n + e])
B, T = h["shape"]
json.dump([list(a[i * T:(i + 1) * T]) for i in range(B)], open(dst, "w"))
PY
    for attn in fused eager; do
    if "$worker" logits --checkpoint "$m" --tokens "$out/$name.tokens.json" --out "$out/$name.logits.safetensors" --dtype float32 --attention "$attn" >/dev/null 2>"$out/$name.err"; then
      py "$m/expected.safetensors" "$out/$name.logits.safetensors" "$name ($attn attention)" >> "$out/reference.jsonl" <<'PY'
import json, struct, sys
from array import array
def read(path, key):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])[key]
    s, e = h["data_offsets"]
    a = array("f"); a.frombytes(b[8 + n + s:8 + n + e])
    return a, h["shape"]
want, ws = read(sys.argv[1], "logits")
got, gs = read(sys.argv[2], "logits")
ok = ws == gs
rel = max(abs(x - y) for x, y in zip(want, got)) / max(abs(x) for x in want) if ok else float("inf")
print(json.dumps({"model": sys.argv[3], "rel": rel, "pass": ok and rel <= 1e-4}))
PY
    else
      echo "{\"model\": \"$name ($attn attention)\", \"rel\": null, \"pass\": false, \"error\": $(py "$out/$name.err" <<<'import json,sys; print(json.dumps(open(sys.argv[1]).read()[-400:]))')}" >> "$out/reference.jsonl"
    fi
    done
  done
  log "reference logits: $(grep -c '"pass": true' "$out/reference.jsonl" || true) of $(wc -l < "$out/reference.jsonl") within 1e-4"
else
  log "no reference models under $reference/models: logits check skipped"
fi

# 3. GEMM rate of the compute dtype (and of float32, which statistics use).
if ((cpu)); then g=1024; else g=8192; fi
"$worker" gemm --m $g --n $g --k $g --reps 5 --dtype auto > "$out/gemm.json"
"$worker" gemm --m $g --n $g --k $g --reps 5 --dtype float32 > "$out/gemm_f32.json"
log "GEMM: $(cat "$out/gemm.json")"

# 4. The 8B-shaped model and the jobs.
model="$out/model"
log "writing a random model: ${shape[*]} --layers $layers (bf16)"
"$worker" init-model --out "$model" "${shape[@]}" --layers "$layers" --dtype bfloat16 >/dev/null
cp "$root/examples/kjv-llama/tokenizer.json" "$root/examples/kjv-llama/tokenizer_config.json" "$model/"
cat "$root/examples/data/kjv/calib.jsonl" "$root/examples/data/kjv/test.jsonl" > "$out/calib.jsonl"
for algo in $algos; do
  left=$(( budget_s - ($(date +%s) - start) ))
  if (( left < 30 )); then log "time budget spent: $algo not run"; continue; fi
  case $algo in
    RTN) section="RTN"; fmt="compressed-tensors"; extra="" ;;
    AutoAWQ) section="AutoAWQ"; fmt="awq"; extra="    N_GRID: 20"$'\n'"    CLIP: true" ;;
    GPTQ) section="GPTQ"; fmt="gptq"; extra="    DAMP_PERCENT: 0.01"$'\n'"    BLOCK_SIZE: 128" ;;
  esac
  cat > "$out/$algo.yaml" <<YAML
MODEL: "$model"
ALGORITHM: $algo
EXPORT_FORMAT: $fmt
llm:
  $section:
    W_BIT: 4
    Q_GROUP_SIZE: 128
    ZERO_POINT: true
$extra
calibration:
  data_path: "$out/calib.jsonl"
  n_samples: $samples
  seqlen: $seqlen
eval:
  tasks:
    - type: ppl
      name: kjv
      data_path: "$root/examples/data/kjv/test.jsonl"
      seqlen: $seqlen
      num_samples: $eval_windows
      batch_size: 2
YAML
  log "$algo: running (at most ${left}s)"
  rc=0
  timeout "$left" "$worker" run "$out/$algo.yaml" --job-dir "$out/job-$algo" >/dev/null 2>&1 || rc=$?
  echo "$rc" > "$out/job-$algo.rc"
  log "$algo: exit $rc"
done

# 5. The table.
py "$out" "$layers" "$samples" "$seqlen" "$cpu" "$algos" "${shape[@]}" <<'PY'
import json, os, sys
out, layers, samples, seqlen, cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
algos = sys.argv[6].split()
a = dict(zip(sys.argv[7::2], sys.argv[8::2]))
hid, inter, heads, kvh = int(a["--hidden"]), int(a["--intermediate"]), int(a["--heads"]), int(a["--kv-heads"])
hd = hid // heads
lin = hid * (hid + 2 * kvh * hd) + heads * hd * hid + 3 * hid * inter   # Linear params per block
N = samples * seqlen                                                    # calibration tokens
fwd = 2 * N * lin                                                       # one block forward, GEMM FLOPs
gemm = json.load(open(os.path.join(out, "gemm.json")))["gflops"] * 1e9
gemm32 = json.load(open(os.path.join(out, "gemm_f32.json")))["gflops"] * 1e9
# The GEMM work each algorithm cannot avoid per block (compute dtype unless
# noted): RTN none; GPTQ 5 block forwards (4 captures, next inputs) plus the
# float32 Hessians X^T X and the column updates (~rows * cols^2 each);
# AWQ 3 forwards plus 20 grid points of one block forward and a down_proj.
hess = 2 * N * (3 * hid * hid + inter * inter)
upd = 2 * ((hid + 2 * kvh * hd) * hid * hid + hid * hid * hid + 2 * inter * hid * hid + hid * inter * inter) / 2
floor = {"RTN": 0.0,
         "GPTQ": 5 * fwd / gemm + (hess + upd) / gemm32,
         "AutoAWQ": (3 + 20 * (1 + hid * inter / lin)) * fwd / gemm}
refs = [json.loads(l) for l in open(os.path.join(out, "reference.jsonl")) if l.strip()]
rows, ok = [], all(r["pass"] for r in refs)
for algo in algos:
    rc_path = os.path.join(out, f"job-{algo}.rc")
    rep_path = os.path.join(out, f"job-{algo}", "report.json")
    if not os.path.exists(rc_path):
        rows.append({"algorithm": algo, "ran": False}); continue
    rc = int(open(rc_path).read())
    r = {"algorithm": algo, "ran": True, "exit": rc}
    if rc == 0 and os.path.exists(rep_path):
        rep = json.load(open(rep_path))
        st = rep["stage_seconds"]
        mem = rep["memory"]
        q = st.get("quantize", 0.0)
        r.update(total_s=sum(st.values()), quantize_s=q, s_per_block=q / layers,
                 gemm_floor_s_per_block=floor[algo], gemm_share=(floor[algo] / (q / layers)) if q > 0 else None,
                 package_s=st.get("package"), evaluate_s=st.get("evaluate"), baseline_s=st.get("baseline"),
                 host_peak_mib=mem["host_peak_mib"], checkpoint_mib=mem["checkpoint_mib"],
                 device_peak_mib=mem["device_peak_mib"], device_peak_by_stage=mem["device_peak_mib_by_stage"],
                 placement=mem["placement"],
                 ppl_before=rep["eval"]["original"]["kjv"]["ppl"], ppl_after=rep["eval"]["quantized"]["kjv"]["ppl"],
                 size_mib_before=rep["size_mib"]["before"], size_mib_after=rep["size_mib"]["after"])
        good = r["size_mib_after"] < r["size_mib_before"] and (cpu or (mem["device_peak_mib"] or 0) > 0)
        good = good and (("cuda" in mem["placement"]) != cpu)
    else:
        good = False
    r["pass"] = good
    ok = ok and good
    rows.append(r)
summary = {"cpu": cpu, "layers": layers, "calibration_tokens": N, "gemm_gflops": gemm / 1e9, "gemm_f32_gflops": gemm32 / 1e9,
           "reference": refs, "jobs": rows, "pass": ok}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(f"device {'cpu' if cpu else 'cuda'}; {layers} layers; {N} calibration tokens; GEMM {gemm/1e9:.0f} GFLOP/s (float32 {gemm32/1e9:.0f})")
for ref in refs:
    print(f"reference {ref['model']}: max|diff|/max|ref| = {ref['rel']}" + ("" if ref["pass"] else "  FAIL"))
print("| algorithm | s/block | GEMM floor s/block | share | quantize s | 32 blocks s | total s | host peak MiB | device peak MiB | ckpt MiB | ppl before -> after | size MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if not r.get("ran"):
        print(f"| {r['algorithm']} | not run (time budget) |"); continue
    if "s_per_block" not in r:
        print(f"| {r['algorithm']} | FAILED (exit {r['exit']}) |"); continue
    share = f"{100 * r['gemm_share']:.0f}%" if r["gemm_share"] is not None else "-"
    dev = f"{r['device_peak_mib']:.0f}" if r["device_peak_mib"] is not None else "-"
    est = f"{32 * r['s_per_block']:.0f}" + ("" if layers == 32 else " (extrapolated)")
    print(f"| {r['algorithm']} | {r['s_per_block']:.2f} | {r['gemm_floor_s_per_block']:.2f} | {share} | {r['quantize_s']:.1f} | {est} | "
          f"{r['total_s']:.1f} | {r['host_peak_mib']:.0f} | {dev} | {r['checkpoint_mib']:.0f} | "
          f"{r['ppl_before']:.2f} -> {r['ppl_after']:.2f} | {r['size_mib_before']:.0f} -> {r['size_mib_after']:.0f} |")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
