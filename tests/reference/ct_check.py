"""A compressed-tensors checkpoint qjobs wrote, read by the reference stack.

Usage: ct_check.py PACKED FAKE_QUANT TOKENS_JSON QJOBS_LOGITS

PACKED: the job's model/ folder; FAKE_QUANT: its fake_quant twin (a float
checkpoint); TOKENS_JSON: a list of equal-length id lists; QJOBS_LOGITS:
`qjobs-worker logits` of PACKED on those ids (safetensors, tensor "logits").

Checks, with compressed-tensors' own code and transformers' model:
  1. quantization_config validates in compressed-tensors' schema, with no
     warning logged;
  2. every Linear of the model is in exactly one config group or in
     `ignore` (by the library's own matching), and the checkpoint holds
     exactly the tensors the library's compressed modules expect;
  3. the library's decompressor gives every Linear's weight; they are
     compared with the fake_quant twin's weights;
  4. transformers' forward pass of the decompressed model is compared with
     qjobs' logits. With --no-act-sim the library's simulated input
     quantization is off and QJOBS_LOGITS must come from the checkpoint
     without input_activations and KV-cache quantization: the libraries
     simulate activations with other conventions than the serving kernels
     (compressed-tensors' symmetric int8 token scale is amax / 127.5, vLLM's
     and qjobs' amax / 127), and transformers runs a 16-bit KV cache.
Prints one JSON line with the measured figures; exits 1 with the reason on
the first failed check. The thresholds are the caller's (--weight-tol,
--logit-rtol).
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file

import compressed_tensors
import transformers
from compressed_tensors.compressors import ModelCompressor

# The schema and coverage checks are the verify stage's own.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "worker", "verify"))
import ct_verify  # noqa: E402


def fail(msg, **figures):
    print(json.dumps({"ok": False, "error": msg, **figures}))
    sys.exit(1)


def load_folder(path):
    import glob
    out = {}
    for f in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        out.update(load_file(f))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("packed")
    ap.add_argument("fake_quant")
    ap.add_argument("tokens")
    ap.add_argument("qjobs_logits")
    ap.add_argument("--weight-tol", type=float, default=0.0, help="max |w_library - w_fake_quant| / max |w|")
    ap.add_argument("--logit-rtol", type=float, default=1e-4, help="max |l - l_qjobs| / max |l_qjobs|")
    ap.add_argument("--no-act-sim", action="store_true", help="run the decompressed weights without input quantization")
    a = ap.parse_args()
    figures = {"compressed_tensors": compressed_tensors.__version__, "transformers": transformers.__version__,
               "torch": torch.__version__}

    # 1. The schema, with the library's warnings captured; 2. every Linear in
    # exactly one group or ignored.
    try:
        qc = ct_verify.validated_config(a.packed)
        figures["format"] = qc.format
        figures["groups"] = len(qc.config_groups)
        torch.manual_seed(0)
        hf, model, linears = ct_verify.model_with_schemes(a.packed, qc, "cpu")
    except ct_verify.Refused as e:
        fail(f"compressed-tensors {compressed_tensors.__version__}: {e}", **figures)
    figures["linears_quantized"] = sum(getattr(m, "quantization_scheme", None) is not None for _, m in linears)
    figures["linears_ignored"] = len(linears) - figures["linears_quantized"]
    compressor = ModelCompressor(quantization_config=qc)
    compressor.compress_model(model)
    stored = load_folder(a.packed)
    own = model.state_dict()
    tied = getattr(hf, "tie_word_embeddings", False)
    missing = [k for k in own if k not in stored and not (tied and k == "lm_head.weight")]
    unexpected = [k for k in stored if k not in own]
    if qc.kv_cache_scheme is not None:
        # vLLM's names for the FP8 KV cache's scales: one k_scale and v_scale
        # per attention, positive, shape [1].
        figures["kv_cache_scheme"] = f"{qc.kv_cache_scheme.type}{qc.kv_cache_scheme.num_bits} {qc.kv_cache_scheme.strategy}"
        for i in range(hf.num_hidden_layers):
            for kv in ("k_scale", "v_scale"):
                key = f"model.layers.{i}.self_attn.{kv}"
                if key not in stored or stored[key].shape != (1,) or not (stored[key].float() > 0).all():
                    fail(f"kv_cache_scheme without a positive [1] {key}", **figures)
        unexpected = [k for k in unexpected if not k.endswith(("self_attn.k_scale", "self_attn.v_scale"))]
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in stored.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or wrong:
        fail(f"tensors: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes {wrong[:5]}", **figures)
    model.load_state_dict(stored, strict=False)
    if tied:
        model.tie_weights()

    # 3. The library's decompressor against the fake_quant twin.
    compressor.decompress_model(model)
    dtypes = sorted({str(m.weight.dtype) for _, m in linears})
    figures["decompressed_dtype"] = dtypes
    model.to(torch.float32)  # the FP4 decompressors give bfloat16; compared and run in float32
    twin = load_folder(a.fake_quant)
    worst, worst_name = 0.0, None
    for name, module in linears:
        if name == "lm_head" and tied:
            name = "model.embed_tokens"
        ref = twin[name + ".weight"].float()
        got = module.weight.detach().float()
        if got.shape != ref.shape:
            fail(f"{name}: decompressed {tuple(got.shape)}, fake_quant {tuple(ref.shape)}", **figures)
        d = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
        if d > worst:
            worst, worst_name = d, name
    figures["weight_max_rel_diff"] = worst
    if worst > a.weight_tol:
        fail(f"decompressed weights differ from the fake_quant twin: {worst:.3g} at {worst_name}", **figures)

    # 4. transformers' forward pass against qjobs'.
    if a.no_act_sim:
        for _, module in linears:
            module.quantization_enabled = False
    figures["act_sim"] = not a.no_act_sim
    ids = torch.tensor(json.load(open(a.tokens)), dtype=torch.long)
    with torch.no_grad():
        logits = model(ids).logits.float()
    ref = load_file(a.qjobs_logits)["logits"].float()
    rel = ((logits - ref).abs().max() / ref.abs().max()).item()
    figures["logit_rel_diff"] = rel
    if rel > a.logit_rtol:
        fail(f"transformers' logits differ from qjobs': {rel:.3g} relative", **figures)
    print(json.dumps({"ok": True, **figures}))


if __name__ == "__main__":
    main()
