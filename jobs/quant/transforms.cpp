#include "jobs/quant/transforms.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"

namespace qjobs::quant {
namespace {

// W' = f(W) computed in float32, stored back in W's dtype.
template <typename F>
void update(at::Tensor& t, F f) {
  if (!t.defined()) return;
  t = f(t.to(at::kFloat)).to(t.scalar_type());
}

// [kv_heads * hd] per-KV-head values -> [heads * hd], each query head taking
// its KV head's values.
at::Tensor expand_to_query_heads(const at::Tensor& v, const model::ModelConfig& c) {
  const int64_t rep = c.heads / c.kv_heads;
  return v.reshape({c.kv_heads, 1, c.head_dim}).expand({c.kv_heads, rep, c.head_dim}).reshape({-1});
}

}  // namespace

bool is_power_of_two(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

at::Tensor rotation_matrix(int64_t n, uint64_t seed) {
  at::NoGradGuard g;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed == 0 ? 1 : seed);
  if (is_power_of_two(n)) {
    auto h = at::ones({1, 1});
    while (h.size(0) < n) h = at::cat({at::cat({h, h}, 1), at::cat({h, -h}, 1)}, 0);
    h = h / std::sqrt(static_cast<double>(n));
    if (seed == 0) return h;
    const auto signs = at::bernoulli(at::full({n}, 0.5), gen) * 2 - 1;
    return h * signs.unsqueeze(0);
  }
  const auto a = at::normal(0.0, 1.0, {n, n}, gen, at::TensorOptions().dtype(at::kDouble));
  auto [q, r] = at::linalg_qr(a);
  q = q * at::sign(r.diagonal()).unsqueeze(0);
  return q.to(at::kFloat);
}

void fuse_norms(model::LlamaModel& m) {
  at::NoGradGuard g;
  const auto cols = [](at::Tensor& w, const at::Tensor& n) {
    update(w, [&](const at::Tensor& x) { return x * n.to(at::kFloat).unsqueeze(0); });
  };
  for (auto& l : m.layers()) {
    for (auto* lin : {&l.q_proj, &l.k_proj, &l.v_proj}) cols(lin->weight, l.input_norm);
    for (auto* lin : {&l.gate_proj, &l.up_proj}) cols(lin->weight, l.post_norm);
    l.input_norm = at::ones_like(l.input_norm);
    l.post_norm = at::ones_like(l.post_norm);
  }
  m.untie();
  cols(m.lm_head(), m.final_norm());
  m.final_norm() = at::ones_like(m.final_norm());
}

void rotate_residual(model::LlamaModel& m, const at::Tensor& Q) {
  at::NoGradGuard g;
  const auto q = Q.to(at::kFloat).to(m.device());
  m.untie();
  const auto reads = [&](at::Tensor& w) { update(w, [&](const at::Tensor& x) { return at::matmul(x, q); }); };
  const auto writes = [&](model::Linear& lin) {
    update(lin.weight, [&](const at::Tensor& x) { return at::matmul(q.t(), x); });
    update(lin.bias, [&](const at::Tensor& b) { return at::matmul(b, q); });
  };
  reads(m.embed_tokens());
  reads(m.lm_head());
  for (auto& l : m.layers()) {
    for (auto* lin : {&l.q_proj, &l.k_proj, &l.v_proj, &l.gate_proj, &l.up_proj}) reads(lin->weight);
    writes(l.o_proj);
    writes(l.down_proj);
  }
}

void rotate_value_heads(model::LlamaModel& m, const at::Tensor& H) {
  at::NoGradGuard g;
  const auto& c = m.config();
  const auto h = H.to(at::kFloat).to(m.device());
  for (auto& l : m.layers()) {
    // v' = v H per KV head: rows of head k become H^T W_k.
    update(l.v_proj.weight, [&](const at::Tensor& w) {
      return at::matmul(h.t(), w.reshape({c.kv_heads, c.head_dim, -1})).reshape({c.kv_heads * c.head_dim, -1});
    });
    update(l.v_proj.bias, [&](const at::Tensor& b) {
      return at::matmul(b.reshape({c.kv_heads, c.head_dim}), h).reshape({-1});
    });
    // o_proj reads x H per query head: columns of head k become W_k H.
    update(l.o_proj.weight, [&](const at::Tensor& w) {
      const int64_t out = w.size(0);
      return at::matmul(w.reshape({out, c.heads, c.head_dim}).transpose(0, 1), h).transpose(0, 1).reshape({out, -1});
    });
  }
}

void smooth_value_out(model::DecoderLayer& l, const model::ModelConfig& c, const at::Tensor& s) {
  at::NoGradGuard g;
  const auto sf = s.to(at::kFloat);
  update(l.v_proj.weight, [&](const at::Tensor& w) { return w / sf.unsqueeze(1); });
  update(l.v_proj.bias, [&](const at::Tensor& b) { return b / sf; });
  const auto sq = expand_to_query_heads(sf, c);
  update(l.o_proj.weight, [&](const at::Tensor& w) { return w * sq.unsqueeze(0); });
}

void smooth_up_down(model::DecoderLayer& l, const at::Tensor& s) {
  at::NoGradGuard g;
  const auto sf = s.to(at::kFloat);
  update(l.up_proj.weight, [&](const at::Tensor& w) { return w / sf.unsqueeze(1); });
  update(l.up_proj.bias, [&](const at::Tensor& b) { return b / sf; });
  update(l.down_proj.weight, [&](const at::Tensor& w) { return w * sf.unsqueeze(0); });
}

void smooth_attention(model::DecoderLayer& l, const model::ModelConfig& c, const at::Tensor& lambda) {
  at::NoGradGuard g;
  const auto lf = lambda.to(at::kFloat);
  const auto half = c.head_dim / 2;
  const auto per_head = lf.reshape({c.kv_heads, c.head_dim});
  if (!at::allclose(per_head.narrow(1, 0, half), per_head.narrow(1, half, half), 0, 0))
    throw Error(ErrorKind::internal, "smooth_attention: lambda differs within a RoPE pair");
  update(l.k_proj.weight, [&](const at::Tensor& w) { return w / lf.unsqueeze(1); });
  update(l.k_proj.bias, [&](const at::Tensor& b) { return b / lf; });
  const auto lq = expand_to_query_heads(lf, c);
  update(l.q_proj.weight, [&](const at::Tensor& w) { return w * lq.unsqueeze(1); });
  update(l.q_proj.bias, [&](const at::Tensor& b) { return b * lq; });
}

void reorder_intermediate(model::DecoderLayer& l, const at::Tensor& perm) {
  at::NoGradGuard g;
  const auto p = perm.to(at::kLong).to(l.up_proj.weight.device());
  for (auto* lin : {&l.gate_proj, &l.up_proj}) {
    lin->weight = lin->weight.index_select(0, p);
    if (lin->bias.defined()) lin->bias = lin->bias.index_select(0, p);
  }
  l.down_proj.weight = l.down_proj.weight.index_select(1, p);
}

at::Tensor after_rope(const model::LlamaModel& m, const at::Tensor& y) {
  const auto& c = m.config();
  const int64_t B = y.size(0), T = y.size(1);
  const auto k = y.to(at::kFloat).reshape({B, T, -1, c.head_dim});
  const auto t = at::arange(T, at::TensorOptions().dtype(at::kFloat).device(y.device()));
  const auto freqs = at::outer(t, m.rope_inv_freq().to(y.device()));
  const auto emb = at::cat({freqs, freqs}, -1).reshape({1, T, 1, c.head_dim});
  const auto half = c.head_dim / 2;
  const auto rot = at::cat({-k.narrow(-1, half, half), k.narrow(-1, 0, half)}, -1);
  return (k * emb.cos() + rot * emb.sin()).reshape({B, T, -1});
}

}  // namespace qjobs::quant
