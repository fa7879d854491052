"""Runs an ONNX graph qjobs wrote (jobs/export/onnx_llama.hpp) in onnxruntime
(CPU), in two calls through its KV cache: tokens [0, AR) with an empty past,
then [AR, 2AR) with the first call's keys and values as the past. Compares the
logits with `qjobs-worker logits` of the same 2AR tokens, and checks the graph
with onnx.checker (full check) at opset 17.

    python check.py MODEL.onnx CONFIG.json TOKENS.json LOGITS.safetensors AR CL TOLERANCE

Exits 1 when max|onnx - qjobs| / max|qjobs| exceeds TOLERANCE on either call.
"""
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import st_read  # noqa: E402  (tests/tools)

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model, config_path, tokens_path, logits_path = sys.argv[1:5]
    ar, cl, tol = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
    past_len = cl - ar
    onnx.checker.check_model(model, full_check=True)
    opset = onnx.load(model, load_external_data=False).opset_import[0].version
    if opset != 17:
        print(f"onnx check: {model}: opset {opset}, expected 17", file=sys.stderr)
        sys.exit(1)
    config = json.loads(Path(config_path).read_text())
    layers = config["num_hidden_layers"]
    kvh = config.get("num_key_value_heads") or config["num_attention_heads"]
    d = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    tokens = json.loads(Path(tokens_path).read_text())
    if len(tokens) != 2 * ar:
        raise ValueError(f"expected {2 * ar} tokens, got {len(tokens)}")
    ref = st_read.read_f32(logits_path)["logits"][0]  # [2AR, V]

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    past_k = [np.zeros((1, kvh, past_len, d), np.float32) for _ in range(layers)]
    past_v = [np.zeros((1, kvh, past_len, d), np.float32) for _ in range(layers)]
    outputs = [o.name for o in session.get_outputs()]
    worst = 0.0
    for call in range(2):
        start = call * ar
        # Columns [0, P): the past slots (the first `start` hold tokens
        # 0..start-1); columns [P, CL): the new tokens, causal.
        mask = np.full((ar, cl), -1e9, np.float32)
        mask[:, :start] = 0
        mask[:, past_len:] = np.triu(np.full((ar, ar), -1e9, np.float32), k=1)
        feeds = {
            "input_ids": np.array([tokens[start:start + ar]], np.int64),
            "position_ids": np.arange(start, start + ar, dtype=np.int64)[None],
            "attention_mask": mask[None, None],
        }
        for layer in range(layers):
            feeds[f"past_key_{layer}_in"] = past_k[layer]
            feeds[f"past_value_{layer}_in"] = past_v[layer]
        out = dict(zip(outputs, session.run(outputs, feeds)))
        logits = out["logits"].reshape(ar, -1).astype(np.float64)
        want = ref[start:start + ar].astype(np.float64)
        diff = np.abs(logits - want)
        max_ref = float(np.abs(want).max())
        rel = float(diff.max()) / max_ref
        worst = max(worst, rel)
        print(json.dumps({"model": model, "call": call, "positions": [start, start + ar],
                          "max_abs_diff": float(diff.max()), "max_abs_logit": max_ref, "relative": rel,
                          "per_token_max_abs_diff": [float(f"{x:.3g}") for x in diff.max(axis=1)]}))
        # The new keys/values go into the past slots [start, start + AR).
        for layer in range(layers):
            past_k[layer][:, :, start:start + ar] = out[f"past_key_{layer}_out"]
            past_v[layer][:, :, start:start + ar] = out[f"past_value_{layer}_out"]
    if not worst <= tol:
        print(f"onnx check: {model}: relative logit error {worst} above {tol}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"model": model, "ok": True, "relative": worst, "tolerance": tol, "opset": opset},
                     separators=(",", ":")))


if __name__ == "__main__":
    main()
