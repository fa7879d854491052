"""The verify stage's reference read of a compressed-tensors checkpoint.

Usage: ct_verify.py MODEL_DIR MANIFEST_JSON TOKENS_JSON OUT_LOGITS [--max-params N]

Run by qjobs-worker (worker/verify.cpp) with the Python that has the
reference stack (compressed-tensors, transformers). With compressed-tensors'
own code it
  1. validates config.json's quantization_config in the library's schema,
     any warning it logs counting as a failure;
  2. checks that every Linear of the model (built on the meta device from
     config.json) is in exactly one config group or in `ignore`;
  3. decompresses every quantized Linear, one at a time, with the
     compressor the library registers for its group's format, and writes
     the checksums worker/verify.hpp defines of each weight;
  4. when the model has at most --max-params parameters, loads the whole
     decompressed model into transformers and writes its logits of
     TOKENS_JSON (float32, weights only: no simulated input or KV-cache
     quantization) to OUT_LOGITS.
Prints one JSON object: {"ok", "error", "versions", "checksums": {name:
[...]}, "logits": path or null}. Exit status 0 when every step ran, 1 with
"error" set when one refused the checkpoint, 3 with "unavailable" when this
Python lacks the reference stack.
"""

import argparse
import glob
import json
import os
import sys
import warnings

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    import compressed_tensors
    import transformers
    from compressed_tensors.compressors import BaseCompressor, ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config
    from compressed_tensors.utils import is_match, match_name
    from loguru import logger
    from transformers import AutoConfig, AutoModelForCausalLM
except ImportError as e:  # no reference stack here: the worker skips the stage
    print(json.dumps({"ok": False, "unavailable": str(e)}))
    sys.exit(3)

# The projections of the checksums (worker/verify.cpp computes the same):
# element i of a weight in row-major order gets sign
# 1 - 2 * (((i * 2654435761 + k * 40503) mod 2^32) >> 16 & 1), k = 0..3.
PROJECTIONS = 4


def checksums(w):
    """[sum |w|, then sum w * sign_k for each projection], in float64."""
    flat = w.detach().reshape(-1).to(torch.float64)
    out = [flat.abs().sum().item()]
    n = flat.numel()
    step = 1 << 20
    sums = [0.0] * PROJECTIONS
    for start in range(0, n, step):
        idx = torch.arange(start, min(n, start + step), dtype=torch.int64)
        chunk = flat[start:start + idx.numel()]
        for k in range(PROJECTIONS):
            bits = ((idx * 2654435761 + k * 40503) % (1 << 32)) >> 16 & 1
            sums[k] += (chunk * (1 - 2 * bits).to(torch.float64)).sum().item()
    return out + sums


class Refused(Exception):
    pass


def validated_config(model_dir):
    logged = []
    sink = logger.add(lambda m: logged.append(m.record["message"]), level="WARNING")
    config = json.load(open(os.path.join(model_dir, "config.json")))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                qc = QuantizationConfig.model_validate(config["quantization_config"])
            except Exception as e:  # pydantic's ValidationError names the field
                raise Refused(f"quantization_config refused by compressed-tensors' schema: {e}")
    finally:
        logger.remove(sink)
    said = logged + [str(w.message) for w in caught]
    if said:
        raise Refused("compressed-tensors warned about quantization_config: " + " | ".join(said))
    return qc


def model_with_schemes(model_dir, qc, device):
    hf = AutoConfig.from_pretrained(model_dir)
    if hasattr(hf, "quantization_config"):
        del hf.quantization_config
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32)
    model.eval()
    apply_quantization_config(model, qc)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for name, module in linears:
        scheme = getattr(module, "quantization_scheme", None)
        ignored = is_match(name, module, qc.ignore)
        if (scheme is None) == (not ignored):
            raise Refused(f"{name} is in {'no config group and not in ignore' if scheme is None else 'a config group and in ignore'}")
    return hf, model, linears


def scheme_by_name(qc, name):
    """The config group of a Linear named in the checkpoint but not built as a
    module: one whose targets name it (exactly or by "re:"), else the first
    targeting the class "Linear" (transformers' own rule for fused experts);
    None when `ignore` names it."""
    if any(match_name(name, t) for t in qc.ignore):
        return None
    for group in qc.config_groups.values():
        if any(match_name(name, t) for t in group.targets if t != "Linear"):
            return group
    for group in qc.config_groups.values():
        if "Linear" in group.targets:
            return group
    return None


class Tensors:
    """The checkpoint's tensors by name, read lazily from its shards."""

    def __init__(self, model_dir):
        self.where = {}
        self.files = {}
        for f in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
            h = safe_open(f, framework="pt")
            self.files[f] = h
            for k in h.keys():
                self.where[k] = h

    def prefixed(self, prefix):
        return {k[len(prefix):]: h.get_tensor(k) for k, h in self.where.items() if k.startswith(prefix)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("manifest")
    ap.add_argument("tokens")
    ap.add_argument("out_logits")
    ap.add_argument("--max-params", type=float, default=2e9)
    a = ap.parse_args()
    result = {"ok": False, "error": None, "checksums": {}, "logits": None,
              "versions": {"compressed-tensors": compressed_tensors.__version__, "transformers": transformers.__version__,
                           "torch": torch.__version__}}
    try:
        qc = validated_config(a.model_dir)
        hf, meta_model, linears = model_with_schemes(a.model_dir, qc, "meta")
        wanted = json.load(open(a.manifest))
        tensors = Tensors(a.model_dir)
        modules = dict(linears)
        fused = []  # quantized Linears of the checkpoint with no module here
        for name in wanted:
            if name in modules:
                scheme = getattr(modules[name], "quantization_scheme", None)
            else:
                # transformers 5 fuses MoE experts into one parameter: match the
                # checkpoint's per-expert Linear by name, as its loader does.
                fused.append(name)
                scheme = scheme_by_name(qc, name)
            if scheme is None:
                raise Refused(f"no config group quantizes {name}, which the job quantized")
            local = tensors.prefixed(name + ".")
            compressor = BaseCompressor.get_value_from_registry(scheme.format or qc.format)
            try:
                w = compressor.decompress(local, scheme)["weight"]
            except Exception as e:
                raise Refused(f"compressed-tensors' {scheme.format} decompressor refused {name}: {e}")
            result["checksums"][name] = checksums(w)
        params = sum(p.numel() for p in meta_model.parameters())
        if fused:
            result["logits_skipped"] = (f"transformers {transformers.__version__} fuses {len(fused)} expert Linears of "
                                        "the checkpoint into one parameter each: its model is not loaded here")
        elif params > a.max_params:
            result["logits_skipped"] = f"{params} parameters, over --max-params"
        else:
            _, model, _ = model_with_schemes(a.model_dir, qc, "cpu")
            compressor = ModelCompressor(quantization_config=qc)
            compressor.compress_model(model)
            own = model.state_dict()
            stored = {k: h.get_tensor(k) for k, h in tensors.where.items()}
            unexpected = [k for k in stored if k not in own and not k.endswith(("self_attn.k_scale", "self_attn.v_scale"))]
            if unexpected:
                raise Refused(f"tensors compressed-tensors does not expect: {unexpected[:5]}")
            model.load_state_dict({k: v for k, v in stored.items() if k in own}, strict=False)
            if getattr(hf, "tie_word_embeddings", False):
                model.tie_weights()
            compressor.decompress_model(model)
            model.to(torch.float32)
            for _, m in model.named_modules():
                m.quantization_enabled = False
            ids = torch.tensor(json.load(open(a.tokens)), dtype=torch.long)
            with torch.no_grad():
                logits = model(ids).logits.float().contiguous()
            save_file({"logits": logits}, a.out_logits)
            result["logits"] = a.out_logits
        result["ok"] = True
    except Refused as e:
        result["error"] = str(e)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
