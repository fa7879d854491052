"""mlx-lm loads an EXPORT_FORMAT mlx checkpoint as it is: every packed
Linear becomes MLX's QuantizedLinear with the bits and group size its
config.json names, its weights decode (mx.dequantize) to the fake_quant
twin's, and its logits match qjobs' logits of that twin.

  mlx_check.py PACKED FAKE TOKENS.json QJOBS_LOGITS.safetensors
               [--weight-rtol R] [--logit-rtol R]

Prints one JSON line with the figures; exits 1 when a check fails.
"""
import argparse
import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm import load
from safetensors.numpy import load_file


def tensors(folder):
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("packed")
    ap.add_argument("fake")
    ap.add_argument("tokens")
    ap.add_argument("qjobs_logits")
    ap.add_argument("--weight-rtol", type=float, default=1e-6)
    ap.add_argument("--logit-rtol", type=float, default=1e-4)
    a = ap.parse_args()

    model, _ = load(a.packed)
    quantization = json.loads((Path(a.packed) / "config.json").read_text())["quantization"]
    packed = {}
    for f in sorted(Path(a.packed).glob("*.safetensors")):
        packed.update(mx.load(str(f)))
    fake = tensors(a.fake)
    modules = dict(model.named_modules())

    problems, worst, linears = [], 0.0, 0
    for name in sorted(packed):
        if not name.endswith(".scales"):
            continue
        stem = name[: -len(".scales")]
        scheme = quantization.get(stem, quantization)
        module = modules.get(stem)
        if not isinstance(module, nn.QuantizedLinear):
            problems.append(f"{stem}: mlx-lm did not make it a QuantizedLinear ({type(module).__name__})")
            continue
        if (module.bits, module.group_size) != (scheme["bits"], scheme["group_size"]):
            problems.append(f"{stem}: mlx-lm reads {module.bits} bits g{module.group_size}, config says {scheme}")
        w = mx.dequantize(packed[stem + ".weight"], packed[stem + ".scales"], packed[stem + ".biases"],
                          group_size=scheme["group_size"], bits=scheme["bits"])
        w = np.array(w.astype(mx.float32))
        ref = fake[stem + ".weight"].astype(np.float32)
        rel = float(np.abs(w - ref).max() / max(np.abs(ref).max(), 1e-30))
        worst = max(worst, rel)
        linears += 1
        if rel > a.weight_rtol:
            problems.append(f"{stem}: weights differ from the fake_quant twin by {rel:.3g} of max |w|")
    if linears == 0:
        problems.append("no packed Linear found")

    ids = json.loads(Path(a.tokens).read_text())
    logits = np.array(model(mx.array(ids)).astype(mx.float32))
    ours = load_file(a.qjobs_logits)["logits"].astype(np.float32)
    logit_rel = float(np.abs(logits - ours).max() / max(np.abs(ours).max(), 1e-30))
    if logits.shape != ours.shape:
        problems.append(f"logits shape {logits.shape} != {ours.shape}")
    elif logit_rel > a.logit_rtol:
        problems.append(f"mlx-lm's logits differ from qjobs' by {logit_rel:.3g} of max |logit|")
    print(json.dumps({"linears": linears, "weight_max_rel_diff": worst, "logit_rel_diff": logit_rel,
                      "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
