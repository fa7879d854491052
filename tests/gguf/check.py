"""Reads a GGUF file qjobs wrote with llama.cpp's own Python reader (the `gguf`
package) and checks it against the Hugging Face checkpoint it came from, read
here independently (safetensors parsed by hand, tokenizer.json as JSON):
metadata, the tensor table, and every decoder Linear dequantized by the
package's Q8_0 / Q4_0 decoder (gguf.quants), within the block's step of the
original weight (q and k rows in llama.cpp's interleaved RoPE order).

    python check.py FILE.gguf CHECKPOINT_DIR TYPE(q8_0|q4_0)
"""
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import st_read  # noqa: E402  (tests/tools)

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

LINEARS = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
QTYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}
FILE_TYPES = {"q8_0": 7, "q4_0": 2}  # llama_ftype MOSTLY_Q8_0, MOSTLY_Q4_0


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def main():
    file, ckpt, kind = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    reader = GGUFReader(file)
    md = {name: field.contents() for name, field in reader.fields.items()}
    config = json.loads((ckpt / "config.json").read_text())
    tok = json.loads((ckpt / "tokenizer.json").read_text())

    check(md["GGUF.version"] == 3, f"version {md['GGUF.version']}")
    check(md["general.architecture"] == "llama", md["general.architecture"])
    for key, cfg in [("llama.block_count", "num_hidden_layers"), ("llama.embedding_length", "hidden_size"),
                     ("llama.feed_forward_length", "intermediate_size"),
                     ("llama.attention.head_count", "num_attention_heads"),
                     ("llama.attention.head_count_kv", "num_key_value_heads"),
                     ("llama.context_length", "max_position_embeddings")]:
        check(md[key] == config[cfg], f"{key} = {md[key]}, config.json {cfg} = {config[cfg]}")
    check(abs(md["llama.attention.layer_norm_rms_epsilon"] - config["rms_norm_eps"]) < 1e-9, "rms_norm_eps")
    check(md["general.file_type"] == FILE_TYPES[kind], f"general.file_type {md['general.file_type']}")
    check(md["tokenizer.ggml.model"] == "gpt2", md["tokenizer.ggml.model"])
    tokens = md["tokenizer.ggml.tokens"]
    check(len(tokens) == config["vocab_size"], f"{len(tokens)} tokens, vocab_size {config['vocab_size']}")
    for t, i in tok["model"]["vocab"].items():
        check(tokens[i] == t, f"token {i}: {tokens[i]!r} != {t!r}")
    check(len(md["tokenizer.ggml.merges"]) == len(tok["model"]["merges"]), "merge count")
    bos = tok["model"]["vocab"].get("<s>")
    if bos is None:
        bos = next(a["id"] for a in tok["added_tokens"] if a["content"] == "<s>")
    check(md["tokenizer.ggml.bos_token_id"] == bos, f"bos {md['tokenizer.ggml.bos_token_id']} != {bos}")
    print(f"ok metadata: llama, {len(tokens)} tokens, {len(md['tokenizer.ggml.merges'])} merges")

    original = st_read.read_f32(ckpt / "model.safetensors")
    layers = config["num_hidden_layers"]
    want = 2 + layers * 9 + (0 if config.get("tie_word_embeddings") else 1)
    check(len(reader.tensors) == want, f"tensor count {len(reader.tensors)}, want {want}")
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    qtype = QTYPES[kind]
    checked, worst = 0, 0.0
    for t in reader.tensors:
        parts = t.name.split(".")
        role = parts[2] if len(parts) == 4 and parts[0] == "blk" else None
        if role not in LINEARS:
            check(t.tensor_type == GGMLQuantizationType.F32, f"{t.name} stays F32, is {t.tensor_type.name}")
            continue
        check(t.tensor_type == qtype, f"{t.name}: {t.tensor_type.name}, want {qtype.name}")
        hf = original[f"model.layers.{parts[1]}.{LINEARS[role]}.weight"].astype(np.float64)
        rows, cols = hf.shape
        check([int(x) for x in t.shape] == [cols, rows], f"{t.name}: ne {list(t.shape)}, want [in, out] = {[cols, rows]}")
        deq = dequantize(t.data, qtype).reshape(rows, cols).astype(np.float64)
        # GGUF row r holds HF row src (RoPE pairs interleaved per head).
        heads = config["num_attention_heads"] if role == "attn_q" else (
            config["num_key_value_heads"] if role == "attn_k" else 0)
        src = np.arange(rows)
        if heads:
            h, i = src // head_dim, src % head_dim
            src = h * head_dim + np.where(i % 2 == 0, i // 2, (i - 1) // 2 + head_dim // 2)
        ref = hf[src]
        # The block's step |d|, read from the raw blocks (f16 d first in each block).
        block_bytes = 34 if kind == "q8_0" else 18
        raw = np.asarray(t.data, dtype=np.uint8).reshape(-1, block_bytes)
        step = np.abs(raw[:, :2].copy().view("<f2").astype(np.float64)).reshape(rows, cols // 32)
        step = np.repeat(step, 32, axis=1)
        # Half a step (a full one for Q4_0's asymmetric range edge), plus d's own f16 rounding.
        bound = (0.5 if kind == "q8_0" else 1.0) * step * (1 + 1e-3) + 1e-7 + (127 if kind == "q8_0" else 8) * step * 2**-11
        err = np.abs(deq - ref)
        bad = np.argwhere(err > bound)
        if len(bad):
            r, c = bad[0]
            raise AssertionError(f"{t.name}[{r}, {c}] off by {err[r, c]} (step {step[r, c]})")
        worst = max(worst, float((err / np.where(step > 0, step, 1)).max()))
        checked += 1
    check(checked == layers * 7, f"{checked} Linears checked, want {layers * 7}")
    print(f"ok {checked} Linears dequantized ({kind}) within the block step; worst error {worst:.3f} steps")


if __name__ == "__main__":
    main()
