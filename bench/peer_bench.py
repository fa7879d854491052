"""qjobs beside the tools users would pick instead, in one run on one machine.

For each model, every tool calibrates on the same token windows (written by
`qjobs-worker calibration` from the job's own spec, so qjobs and its peers
see the same ids, count and length) at the same scheme, and every quantized
model is scored by one evaluator (transformers, the same held-out windows).
Each tool runs in a process of its own, so that its peak resident memory is
its own (the child's ru_maxrss).

Tools and schemes, W4 g128 on every Linear but lm_head (g32 on the example
model, whose MLP width 352 is not a multiple of 128: llm-compressor refuses
that, qjobs would fall back to per-channel for those Linears):
  RTN   qjobs RTN ZERO_POINT false        | llm-compressor QuantizationModifier W4A16
  AWQ   qjobs AutoAWQ ZERO_POINT true,    | llm-compressor AWQModifier W4A16_ASYM
        N_GRID 20, DUO_SCALING, CLIP off  |   (n_grid 20, duo scaling; it has no clip search)
  GPTQ  qjobs GPTQ ZERO_POINT false,      | llm-compressor GPTQModifier W4A16,
        DAMP 0.01, BLOCK 128, no act-order|   dampening 0.01, block 128, actorder None
        STATIC_GROUPS (scales from the    |   (its observer sets every group's scale
        weight before updates)            |   before the column loop)
  AutoRound (sym, its default 200 iterations) where --tools names it.

qjobs computes in float32 on a CPU unless DTYPE says otherwise (`auto`);
the tool `qjobs-bf16` is the same job with DTYPE bfloat16, the dtype
llm-compressor computes in when the checkpoint is bf16.

Time per block is the quantize step's wall time (qjobs: its report's
`quantize` stage; peers: the `oneshot` / `quantize` call) over the number of
decoder layers. Peers are run from their pip packages, never copied.

  python bench/peer_bench.py --worker build/bin/qjobs-worker --out DIR
      [--models example,llama8b,qwen2] [--algos RTN,AWQ,GPTQ]
      [--tools qjobs,llmcompressor,autoround] [--samples N] [--seqlen N]
      [--layers N] [--timeout S]
"""
import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "kjv-llama")
CALIB_TEXT = os.path.join(ROOT, "examples", "data", "kjv", "calib.jsonl")
EVAL_TEXT = os.path.join(ROOT, "examples", "data", "kjv", "test.jsonl")

SHAPES = {
    # Llama-3-8B's layer shapes, bf16.
    "llama8b": dict(family="llama", hidden=4096, intermediate=14336, heads=32, kv_heads=8, vocab=128256),
    # Qwen2.5-7B's layer shapes (q/k/v biases), bf16.
    "qwen2": dict(family="qwen2", hidden=3584, intermediate=18944, heads=28, kv_heads=4, vocab=152064),
}


def run_child(cmd, timeout, log_path, env=None):
    """Runs cmd in its own process; returns (exit code, wall s, peak RSS MiB,
    CPU seconds in user and in system mode)."""
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                return 124, time.monotonic() - t0, ru.ru_maxrss / 1024, ru.ru_utime, ru.ru_stime
            time.sleep(0.2)
    return os.waitstatus_to_exitcode(status), time.monotonic() - t0, ru.ru_maxrss / 1024, ru.ru_utime, ru.ru_stime


# ---------------------------------------------------------------- models


def make_model(name, out, worker, layers):
    """The model folder for `name`: the shipped example, or a random
    checkpoint with a real model's layer shapes and the example's tokenizer
    (ids above its vocabulary are simply never used)."""
    if name == "example":
        return EXAMPLE
    s = SHAPES[name]
    d = os.path.join(out, f"model-{name}")
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    if s["family"] == "llama":
        subprocess.run([worker, "init-model", "--out", d, "--hidden", str(s["hidden"]), "--intermediate",
                        str(s["intermediate"]), "--heads", str(s["heads"]), "--kv-heads", str(s["kv_heads"]),
                        "--vocab", str(s["vocab"]), "--layers", str(layers), "--dtype", "bfloat16"],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM
        torch.manual_seed(0)
        cfg = Qwen2Config(hidden_size=s["hidden"], intermediate_size=s["intermediate"], num_hidden_layers=layers,
                          num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"], vocab_size=s["vocab"],
                          max_position_embeddings=4096, tie_word_embeddings=False, torch_dtype="bfloat16")
        with torch.device("cpu"):
            m = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
        m.save_pretrained(d)
        del m
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(EXAMPLE, f), d)
    return d


def eval_windows(seqlen, count):
    """Held-out windows: the test text, tokenized once, in consecutive
    non-overlapping windows (the GPTQ/AWQ perplexity protocol)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(EXAMPLE, "tokenizer.json"))
    text = "\n\n".join(json.loads(l)["text"] for l in open(EVAL_TEXT) if l.strip())
    ids = tok.encode(text, add_special_tokens=False).ids
    n = min(count, len(ids) // seqlen)
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(n)]


def perplexity(model, windows):
    import torch
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            logits = model(input_ids=x).logits.float()
            lp = torch.log_softmax(logits[0, :-1], dim=-1)
            nll -= lp.gather(1, x[0, 1:, None]).sum().item()
            count += len(w) - 1
    return math.exp(nll / count)


# ---------------------------------------------------------------- children


def child_eval(args):
    """Perplexity of a saved float checkpoint (the original, or qjobs'
    fake_quant twin)."""
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    windows = json.load(open(args.eval))
    print(json.dumps({"ppl": perplexity(m, windows)}))


def child_peer(args):
    """One peer tool on one model and scheme, in this process; prints its
    quantize seconds and, when given windows, its perplexity in memory."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ids = load_file(args.calib)["input_ids"]
    if not torch.cuda.is_available():
        # llm-compressor's AWQ pins its cached activations for faster host to
        # device copies, which torch refuses without a CUDA driver; with no
        # device there is no copy to speed up, so pinning is left out.
        torch.Tensor.pin_memory = lambda self, *a, **k: self
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype="auto").eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    n, seqlen = ids.shape
    if args.tool == "llmcompressor":
        from datasets import Dataset
        from llmcompressor import oneshot
        from llmcompressor.modifiers.awq import AWQModifier
        from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
        ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
        def groups(symmetric):
            # W4 in groups of --group columns: the W4A16 / W4A16_ASYM presets
            # with the group size this model divides.
            return {"group_0": {"targets": ["Linear"],
                                "weights": {"num_bits": 4, "type": "int", "symmetric": symmetric,
                                            "strategy": "group", "group_size": args.group}}}
        recipe = {
            "RTN": lambda: QuantizationModifier(config_groups=groups(True), ignore=["lm_head"]),
            "AWQ": lambda: AWQModifier(config_groups=groups(False), ignore=["lm_head"], n_grid=20, duo_scaling=True),
            "GPTQ": lambda: GPTQModifier(config_groups=groups(True), ignore=["lm_head"], block_size=128,
                                         dampening_frac=0.01, actorder=None),
        }[args.algo]()
        t0 = time.monotonic()
        oneshot(model=model, processor=tok, dataset=ds, recipe=recipe, max_seq_length=seqlen,
                num_calibration_samples=n, shuffle_calibration_samples=False,
                pipeline="basic" if args.algo == "RTN" else "sequential")
        seconds = time.monotonic() - t0
    elif args.tool == "autoround":
        from auto_round import AutoRound
        if args.algo != "AutoRound":
            raise SystemExit(f"autoround runs AutoRound, not {args.algo}")
        data = [{"input_ids": ids[i:i + 1], "attention_mask": torch.ones_like(ids[i:i + 1])} for i in range(n)]
        t0 = time.monotonic()
        ar = AutoRound(model, tok, bits=4, group_size=args.group, sym=True, dataset=data, nsamples=n, seqlen=seqlen,
                       batch_size=min(8, n), device_map="cpu")
        model, _ = ar.quantize()
        seconds = time.monotonic() - t0
    else:
        raise SystemExit(f"unknown tool {args.tool}")
    out = {"quantize_s": seconds}
    if args.eval:
        out["ppl"] = perplexity(model.float().eval(), json.load(open(args.eval)))
    print("PEER_RESULT " + json.dumps(out))


# ---------------------------------------------------------------- qjobs


QJOBS_SECTION = {
    "RTN": ("RTN", "    ZERO_POINT: false\n"),
    "AWQ": ("AutoAWQ", "    ZERO_POINT: true\n    N_GRID: 20\n    DUO_SCALING: true\n    CLIP: false\n"),
    # llm-compressor takes every group's scale from the weight before the
    # column updates (its observer runs once, ahead of the GPTQ loop):
    # qjobs' STATIC_GROUPS.
    "GPTQ": ("GPTQ", "    ZERO_POINT: false\n    DAMP_PERCENT: 0.01\n    BLOCK_SIZE: 128\n    DESC_ACT: false\n"
                     "    STATIC_GROUPS: true\n    TRUE_SEQUENTIAL: false\n"),
}


def group_size(model_name):
    return 32 if model_name == "example" else 128


def qjobs_spec(path, model, algo, samples, seqlen, group, dtype="auto"):
    section, keys = QJOBS_SECTION[algo]
    with open(path, "w") as f:
        f.write(f'MODEL: "{model}"\nALGORITHM: {section}\nEXPORT_FORMAT: fake_quant\nVERIFY: false\nDTYPE: {dtype}\n'
                f"llm:\n  {section}:\n    W_BIT: 4\n    Q_GROUP_SIZE: {group}\n{keys}"
                f'calibration:\n  data_path: "{CALIB_TEXT}"\n  n_samples: {samples}\n  seqlen: {seqlen}\n')


# ---------------------------------------------------------------- driver


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", choices=["eval", "peer"])
    ap.add_argument("--tool")
    ap.add_argument("--algo")
    ap.add_argument("--model")
    ap.add_argument("--calib")
    ap.add_argument("--eval")
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--worker", default=os.path.join(ROOT, "build", "bin", "qjobs-worker"))
    ap.add_argument("--out")
    ap.add_argument("--models", default="example,llama8b")
    ap.add_argument("--algos", default="RTN,AWQ,GPTQ")
    ap.add_argument("--tools", default="qjobs,llmcompressor")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args()
    if args.child == "eval":
        return child_eval(args)
    if args.child == "peer":
        return child_peer(args)

    out = os.path.abspath(args.out or f"/tmp/qjobs-peer-{int(time.time())}")
    os.makedirs(out, exist_ok=True)
    worker = os.path.abspath(args.worker)
    tools = args.tools.split(",")
    algos = args.algos.split(",")
    if "autoround" in tools and "AutoRound" not in algos:
        algos.append("AutoRound")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    me = [sys.executable, os.path.abspath(__file__)]
    results = []
    for mname in args.models.split(","):
        model = make_model(mname, out, worker, args.layers)
        cfg = json.load(open(os.path.join(model, "config.json")))
        layers = cfg["num_hidden_layers"]
        ckpt_mib = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
                       if f.endswith(".safetensors")) / 2**20
        # One calibration set per model, written by qjobs from a job spec.
        calib = os.path.join(out, f"{mname}.calib.safetensors")
        qjobs_spec(os.path.join(out, f"{mname}.calib.yaml"), model, "AWQ", args.samples, args.seqlen, group_size(mname))
        subprocess.run([worker, "calibration", os.path.join(out, f"{mname}.calib.yaml"), "--out", calib],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        evals = None
        if mname == "example":
            evals = os.path.join(out, "eval.json")
            json.dump(eval_windows(min(args.seqlen, cfg.get("max_position_embeddings", 2048)), args.eval_windows),
                      open(evals, "w"))
            rc, *_ = run_child(me + ["--child", "eval", "--model", model, "--eval", evals], 600,
                                 os.path.join(out, f"{mname}.original.log"), env)
            base = json.loads(open(os.path.join(out, f"{mname}.original.log")).read().strip().splitlines()[-1])["ppl"]
            results.append(dict(model=mname, algo="original", tool="-", ppl=base, ckpt_mib=ckpt_mib, layers=layers))
        for algo in algos:
            for tool in tools:
                if (algo == "AutoRound") != (tool == "autoround"):
                    continue
                tag = f"{mname}.{algo}.{tool}"
                log = os.path.join(out, tag + ".log")
                r = dict(model=mname, algo=algo, tool=tool, layers=layers, ckpt_mib=ckpt_mib)
                print(f"[peer_bench] {tag} ...", flush=True)
                if tool in ("qjobs", "qjobs-bf16"):
                    spec = os.path.join(out, tag + ".yaml")
                    qjobs_spec(spec, model, algo, args.samples, args.seqlen, group_size(mname),
                               "bfloat16" if tool == "qjobs-bf16" else "auto")
                    jd = os.path.join(out, "job-" + tag)
                    shutil.rmtree(jd, ignore_errors=True)
                    rc, wall, rss, user, system = run_child([worker, "run", spec, "--job-dir", jd], args.timeout, log,
                                                            env)
                    r.update(exit=rc, wall_s=wall, peak_rss_mib=rss, cpu_user_s=user, cpu_sys_s=system)
                    if rc == 0:
                        rep = json.load(open(os.path.join(jd, "report.json")))
                        r["quantize_s"] = rep["stage_seconds"]["quantize"]
                        r["disk_peak_mib"] = rep["memory"].get("disk_peak_mib")
                        if evals:
                            rc2, *_ = run_child(me + ["--child", "eval", "--model", os.path.join(jd, "model"),
                                                        "--eval", evals], 600, log + ".eval", env)
                            if rc2 == 0:
                                r["ppl"] = json.loads(open(log + ".eval").read().strip().splitlines()[-1])["ppl"]
                else:
                    cmd = me + ["--child", "peer", "--tool", tool, "--algo", algo, "--model", model, "--calib", calib,
                           "--group", str(group_size(mname))]
                    if evals:
                        cmd += ["--eval", evals]
                    rc, wall, rss, user, system = run_child(cmd, args.timeout, log, env)
                    r.update(exit=rc, wall_s=wall, peak_rss_mib=rss, cpu_user_s=user, cpu_sys_s=system)
                    lines = [l for l in open(log, errors="replace") if l.startswith("PEER_RESULT ")]
                    if rc == 0 and lines:
                        r.update(json.loads(lines[-1][len("PEER_RESULT "):]))
                if "quantize_s" in r:
                    r["s_per_block"] = r["quantize_s"] / layers
                print(f"[peer_bench] {tag}: {json.dumps(r)}", flush=True)
                results.append(r)
                json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=1)
    table(results, args)


def table(results, args):
    print(f"\n{args.samples} x {args.seqlen} calibration tokens, the same ids for every tool; "
          f"{os.cpu_count()} CPU threads")
    for mname in dict.fromkeys(r["model"] for r in results):
        rows = [r for r in results if r["model"] == mname]
        base = next((r for r in rows if r["algo"] == "original"), None)
        print(f"\n### {mname} ({rows[0]['layers']} layers, checkpoint {rows[0]['ckpt_mib']:.0f} MiB"
              + (f", original ppl {base['ppl']:.3f})" if base else ")"))
        print("| scheme | tool | s/block | quantize s | process s | CPU s user / system | peak RSS MiB | ppl | "
              "qjobs/peer time |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r["algo"] == "original":
                continue
            if "s_per_block" not in r:
                print(f"| {r['algo']} | {r['tool']} | failed (exit {r.get('exit')}) | | | | | | |")
                continue
            ratio = ""
            if not r["tool"].startswith("qjobs"):
                q = next((x for x in rows if x["algo"] == r["algo"] and x["tool"] == "qjobs" and "s_per_block" in x),
                         None)
                if q:
                    ratio = f"{q['s_per_block'] / r['s_per_block']:.2f}"
            ppl = f"{r['ppl']:.3f}" if "ppl" in r else "-"
            print(f"| {r['algo']} | {r['tool']} | {r['s_per_block']:.2f} | {r['quantize_s']:.1f} | {r['wall_s']:.1f} | "
                  f"{r['cpu_user_s']:.0f} / {r['cpu_sys_s']:.0f} | {r['peak_rss_mib']:.0f} | {ppl} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
