"""A QuaRot job's checkpoint, checked against a re-implementation from the paper.

Usage: quarot_check.py ORIGINAL FAKE_QUANT TOKENS_JSON QJOBS_LOGITS
                       --bits B --group G [--sym] [--rtn] [--expect plain|signed]

ORIGINAL: the model the job read; FAKE_QUANT: the job's fake_quant model/;
TOKENS_JSON: a list of equal-length id lists; QJOBS_LOGITS: `qjobs-worker
logits` of the job's packed checkpoint (or of FAKE_QUANT) on those ids.

Nothing here is read from qjobs: the rotation is recovered from the two
checkpoints and rebuilt from its definition (QuaRot, Ashkboos et al. 2024).
  1. The residual rotation Q is recovered from the embeddings (E_rot = E Q,
     least squares over the vocabulary): it must be orthogonal and be the
     normalized Sylvester Hadamard matrix with column signs (all + for
     --expect plain, some - for --expect signed). The value heads' rotation
     is the same kind of matrix; its signs are read from v_proj.
  2. The original model with the norms fused into their readers, the residual
     rotated by Q and the value heads by H, run by transformers in float64,
     gives the original model's logits: the rebuilt rotation is the model.
  3. With --rtn: every decoder Linear of the rebuilt model, rounded to nearest
     (float32, asymmetric min/max or symmetric absmax groups of G columns,
     G = -1 per row), is compared with FAKE_QUANT's; the embedding, lm_head
     and norms too. A code may differ where float32 rotations round apart.
  4. transformers' logits of FAKE_QUANT are compared with QJOBS_LOGITS.
Prints one JSON line with the figures; exits 1 naming the failed checks.
"""

import argparse
import copy
import json
import sys

import torch
from safetensors.torch import load_file

import transformers


def sylvester(n):
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    if h.shape[0] != n:
        sys.exit(f"width {n} is not a power of two: no Hadamard matrix to check against")
    return h / n**0.5


def load(path):
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    m.eval()
    return m


def rtn(w, bits, group, sym):
    """Round to nearest, float32, groups along the columns (the AutoAWQ convention)."""
    rows, cols = w.shape
    g = cols if group == -1 else group
    x = w.float().reshape(rows, cols // g, g)
    if sym:
        qmax = 2 ** (bits - 1) - 1
        scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-5) / qmax
        q = torch.clamp(torch.round(x / scale), -qmax - 1, qmax)
        deq = q * scale
    else:
        qmax = 2**bits - 1
        mn, mx = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
        scale = (mx - mn).clamp_min(1e-5) / qmax
        zero = torch.clamp(torch.round(-mn / scale), 0, qmax)
        q = torch.clamp(torch.round(x / scale) + zero, 0, qmax)
        deq = (q - zero) * scale
    return deq.reshape(rows, cols), scale.expand_as(x).reshape(rows, cols)


def rotated(orig, Q, H, dtype):
    """The original model's tensors with norms fused, residual and value heads
    rotated, in `dtype` (float64 for the function check, float32 as a job
    computes); lm_head untied."""
    c = orig.config
    sd = {k: v.to(dtype) for k, v in orig.state_dict().items()}
    Q, H = Q.to(dtype), H.to(dtype)
    out = dict(sd)
    out["lm_head.weight"] = (sd["model.embed_tokens.weight"] if c.tie_word_embeddings else sd["lm_head.weight"]) * sd[
        "model.norm.weight"
    ]
    out["lm_head.weight"] = out["lm_head.weight"] @ Q
    out["model.norm.weight"] = torch.ones_like(sd["model.norm.weight"])
    out["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"] @ Q
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        g_in, g_post = sd[p + "input_layernorm.weight"], sd[p + "post_attention_layernorm.weight"]
        for n in ("q_proj", "k_proj", "v_proj"):
            out[p + f"self_attn.{n}.weight"] = (sd[p + f"self_attn.{n}.weight"] * g_in) @ Q
        for n in ("gate_proj", "up_proj"):
            out[p + f"mlp.{n}.weight"] = (sd[p + f"mlp.{n}.weight"] * g_post) @ Q
        out[p + "self_attn.o_proj.weight"] = Q.T @ sd[p + "self_attn.o_proj.weight"]
        out[p + "mlp.down_proj.weight"] = Q.T @ sd[p + "mlp.down_proj.weight"]
        out[p + "input_layernorm.weight"] = torch.ones_like(g_in)
        out[p + "post_attention_layernorm.weight"] = torch.ones_like(g_post)
        v = out[p + "self_attn.v_proj.weight"]
        v = v.reshape(c.num_key_value_heads, hd, -1)
        out[p + "self_attn.v_proj.weight"] = (H.T @ v).reshape(c.num_key_value_heads * hd, -1)
        o = out[p + "self_attn.o_proj.weight"]
        o = o.reshape(o.shape[0], c.num_attention_heads, hd)
        out[p + "self_attn.o_proj.weight"] = (o @ H).reshape(o.shape[0], -1)
    return out


def model_from(orig, tensors):
    cfg = copy.deepcopy(orig.config)
    cfg.tie_word_embeddings = False
    m = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float64)
    m.load_state_dict({k: v.to(torch.float64) for k, v in tensors.items()}, strict=True)
    m.eval()
    return m


def rel(a, b):
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("fake")
    ap.add_argument("tokens")
    ap.add_argument("qjobs_logits")
    ap.add_argument("--bits", type=int, required=True)
    ap.add_argument("--group", type=int, required=True)
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--rtn", action="store_true")
    ap.add_argument("--expect", choices=["plain", "signed"], default="signed")
    ap.add_argument("--max-code-mismatch", type=float, default=1e-3)
    ap.add_argument("--logit-rtol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.manual_seed(0)
    problems, figures = [], {}

    orig, fake = load(a.original), load(a.fake)
    c = orig.config
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    fsd = fake.state_dict()

    # 1. The residual rotation from the embeddings, and its kind.
    E = orig.state_dict()["model.embed_tokens.weight"]
    Q_rec = torch.linalg.lstsq(E, fsd["model.embed_tokens.weight"]).solution
    n = c.hidden_size
    figures["q_orthogonality"] = float((Q_rec.T @ Q_rec - torch.eye(n, dtype=torch.float64)).abs().max())
    D = sylvester(n).T @ Q_rec
    signs = torch.sign(torch.diagonal(D))
    figures["q_hadamard_structure"] = float((D - torch.diag(signs)).abs().max())
    figures["q_negative_signs"] = int((signs < 0).sum())
    if figures["q_orthogonality"] > 1e-4:
        problems.append(f"the embedding's rotation is not orthogonal: |Q^T Q - I| = {figures['q_orthogonality']:.3g}")
    if figures["q_hadamard_structure"] > 1e-4:
        problems.append(f"the rotation is not a signed Hadamard matrix: {figures['q_hadamard_structure']:.3g}")
    if a.expect == "plain" and figures["q_negative_signs"] != 0:
        problems.append(f"ROTATION hadamard, but {figures['q_negative_signs']} column signs are negative")
    if a.expect == "signed" and figures["q_negative_signs"] in (0, n):
        problems.append("ROTATION random_hadamard, but every column sign is the same")
    Q = sylvester(n) * signs.unsqueeze(0)

    # The value heads' H = Hadamard * signs t: row i of the rotated v_proj is
    # t_i times row i of Hadamard^T (fused, rotated v_proj), up to quantization.
    plain_H = sylvester(hd)
    ref0 = rotated(orig, Q, plain_H, torch.float64)
    v_ref = ref0["model.layers.0.self_attn.v_proj.weight"][:hd]
    v_job = fsd["model.layers.0.self_attn.v_proj.weight"][:hd]
    corr = (v_ref * v_job).sum(1) / (v_ref.norm(dim=1) * v_job.norm(dim=1)).clamp_min(1e-30)
    figures["h_min_abs_row_correlation"] = float(corr.abs().min())
    if figures["h_min_abs_row_correlation"] < 0.9:
        problems.append(f"v_proj's rows are not a signed Hadamard rotation of the reference's: {corr.abs().min():.3g}")
    H = plain_H * torch.sign(corr).unsqueeze(0)
    figures["h_negative_signs"] = int((corr < 0).sum())

    # 2. The rebuilt rotation preserves the function.
    ids = torch.tensor(json.load(open(a.tokens)), dtype=torch.long)
    with torch.no_grad():
        base = orig(ids).logits
        rot = model_from(orig, rotated(orig, Q, H, torch.float64))(ids).logits
    figures["rotated_logit_rel_err"] = rel(rot, base)
    if figures["rotated_logit_rel_err"] > 1e-6:
        problems.append(f"the rebuilt rotation changes the logits by {figures['rotated_logit_rel_err']:.3g}")

    # 3. Round to nearest of the rebuilt rotation, against the job's weights.
    if a.rtn:
        ref32 = rotated(orig, Q.float(), H.float(), torch.float32)
        mismatched = total = 0
        worst_close = 0.0
        for name, w in ref32.items():
            job = fsd[name].float()
            if name.startswith("model.layers.") and name.endswith("proj.weight"):
                deq, step = rtn(w, a.bits, a.group, a.sym)
                d = (deq - job).abs()
                far = d > 0.5 * step
                mismatched += int(far.sum())
                total += d.numel()
                if (~far).any():
                    worst_close = max(worst_close, float((d / step)[~far].max()))
            else:
                err = rel(job, w)
                if err > 1e-5:
                    problems.append(f"{name}: {err:.3g} from the rebuilt rotation")
        figures["codes_compared"] = total
        figures["code_mismatch_fraction"] = mismatched / max(total, 1)
        figures["worst_matching_code_diff_in_steps"] = worst_close
        if figures["code_mismatch_fraction"] > a.max_code_mismatch:
            problems.append(f"{mismatched} of {total} codes differ from round-to-nearest of the rebuilt rotation")
        if worst_close > 1e-3:
            problems.append(f"matching codes differ by {worst_close:.3g} of a step")

    # 4. The job's model in transformers against qjobs' logits.
    ours = load_file(a.qjobs_logits)["logits"].to(torch.float64)
    with torch.no_grad():
        theirs = fake(ids).logits
    figures["fake_logit_rel_err"] = rel(theirs, ours) if theirs.shape == ours.shape else float("inf")
    if figures["fake_logit_rel_err"] > a.logit_rtol:
        problems.append(f"transformers' logits of the job's model differ from qjobs' by {figures['fake_logit_rel_err']:.3g}")

    print(json.dumps(figures))
    for p in problems:
        print("FAIL:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
