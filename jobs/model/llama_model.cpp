#include "jobs/model/llama_model.hpp"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "common/error.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"

namespace qjobs::model {

at::Tensor Linear::operator()(const at::Tensor& x) const { return at::linear(act.apply(x), weight, bias); }

std::vector<std::pair<std::string, Linear*>> DecoderLayer::linears() {
  return {{"self_attn.q_proj", &q_proj}, {"self_attn.k_proj", &k_proj}, {"self_attn.v_proj", &v_proj},
          {"self_attn.o_proj", &o_proj}, {"mlp.gate_proj", &gate_proj}, {"mlp.up_proj", &up_proj},
          {"mlp.down_proj", &down_proj}};
}

at::Tensor rope_inverse_frequencies(const ModelConfig& c) {
  const auto dim = c.head_dim;
  const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv = at::reciprocal(at::pow(c.rope_theta, exponents));
  const auto& s = c.rope_scaling;
  if (s.type == "linear") {
    inv = inv / s.factor;
  } else if (s.type == "llama3") {
    const double low_wl = static_cast<double>(s.original_max_position) / s.low_freq_factor;
    const double high_wl = static_cast<double>(s.original_max_position) / s.high_freq_factor;
    const auto wavelen = (2 * M_PI) / inv;
    auto scaled = at::where(wavelen > low_wl, inv / s.factor, inv);
    const auto smooth = (static_cast<double>(s.original_max_position) / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
    const auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const auto medium = at::logical_and(at::logical_not(wavelen < high_wl), at::logical_not(wavelen > low_wl));
    inv = at::where(medium, smoothed, scaled);
  }
  return inv;
}

namespace {

// glibc maps every block above its mmap threshold afresh and unmaps it on
// free, so each large activation costs page faults on every op. Keeping
// blocks up to 32 MiB (glibc's maximum) in the heap lets them be reused.
void tune_allocator_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
  });
}

}  // namespace

LlamaModel LlamaModel::load(const Checkpoint& ckpt, const LoadOptions& o) {
  tune_allocator_once();
  LlamaModel m;
  m.config_ = ModelConfig::from_json(ckpt.config());
  m.dtype_ = o.dtype;
  m.device_ = o.device;
  const auto& c = m.config_;
  const auto qc = ckpt.config().value("quantization_config", nlohmann::json::object());
  const auto packed_suffix = exporter::packed_weight_suffix(qc);
  const bool w8a8 = exporter::is_w8a8(qc);
  const auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const std::string stem = name.size() > 7 ? name.substr(0, name.size() - 7) : name;
    // A packed Linear (awq, gptq, compressed-tensors) is read back as its dequantized weight.
    at::Tensor t = !ckpt.has(name) && packed_suffix && ckpt.has(stem + "." + *packed_suffix)
                       ? exporter::unpack_weight(ckpt, stem, qc)
                   : w8a8 && stem != name && ckpt.has(stem + ".weight_scale") ? exporter::w8a8_dequantize(ckpt, stem)
                                                                            : ckpt.tensor(name);
    if (t.sizes().vec() != shape) {
      std::string want, got;
      for (auto d : shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      for (auto d : t.sizes()) got += (got.empty() ? "" : ",") + std::to_string(d);
      throw Error(ErrorKind::data_corruption, "tensor '" + name + "' has shape [" + got + "], config.json implies [" + want + "]");
    }
    return t.to(o.device, o.dtype);
  };
  const auto linear = [&](const std::string& p, int64_t out, int64_t in, bool bias) {
    Linear l;
    l.weight = get(p + ".weight", {out, in});
    if (bias) l.bias = get(p + ".bias", {out});
    return l;
  };
  m.embed_tokens_ = get("model.embed_tokens.weight", {c.vocab, c.hidden});
  m.final_norm_ = get("model.norm.weight", {c.hidden});
  if (c.tie_word_embeddings || !ckpt.has("lm_head.weight"))
    m.lm_head_ = m.embed_tokens_;
  else
    m.lm_head_ = get("lm_head.weight", {c.vocab, c.hidden});
  const int64_t q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    DecoderLayer l;
    l.input_norm = get(p + "input_layernorm.weight", {c.hidden});
    l.post_norm = get(p + "post_attention_layernorm.weight", {c.hidden});
    l.q_proj = linear(p + "self_attn.q_proj", q_out, c.hidden, c.qkv_bias);
    l.k_proj = linear(p + "self_attn.k_proj", kv_out, c.hidden, c.qkv_bias);
    l.v_proj = linear(p + "self_attn.v_proj", kv_out, c.hidden, c.qkv_bias);
    l.o_proj = linear(p + "self_attn.o_proj", c.hidden, q_out, c.o_bias);
    l.gate_proj = linear(p + "mlp.gate_proj", c.intermediate, c.hidden, c.mlp_bias);
    l.up_proj = linear(p + "mlp.up_proj", c.intermediate, c.hidden, c.mlp_bias);
    l.down_proj = linear(p + "mlp.down_proj", c.hidden, c.intermediate, c.mlp_bias);
    m.layers_.push_back(std::move(l));
  }
  m.inv_freq_ = rope_inverse_frequencies(c).to(o.device);
  if (ckpt.config().contains("qjobs_quantization")) m.apply_simulated_quantization(ckpt.config()["qjobs_quantization"]);
  if (w8a8) m.apply_w8a8_schemes(ckpt, qc);
  return m;
}

void LlamaModel::apply_simulated_quantization(const nlohmann::json& qq) {
  if (!qq.is_object()) return;
  if (qq.contains("activations") && qq["activations"].is_object()) {
    std::map<std::string, Linear*> by_name;
    for (std::size_t i = 0; i < layers_.size(); ++i)
      for (auto& [n, l] : layers_[i].linears()) by_name["model.layers." + std::to_string(i) + "." + n] = l;
    for (auto& [name, a] : qq["activations"].items()) {
      const auto it = by_name.find(name);
      if (it == by_name.end())
        throw Error(ErrorKind::invalid_input, "qjobs_quantization.activations names no Linear of this model: " + name);
      it->second->act = ActQuant::from_json(a);
    }
  }
  if (qq.contains("kv_cache")) kv_quant_ = KvQuant::from_json(qq["kv_cache"]);
}

void LlamaModel::apply_w8a8_schemes(const Checkpoint& ckpt, const nlohmann::json& qc) {
  const auto groups = qc.value("config_groups", nlohmann::json::object());
  if (groups.size() != 1) throw Error(ErrorKind::invalid_input, "W8A8 checkpoints with other than one config group are not read");
  const auto ia = groups.begin()->value("input_activations", nlohmann::json());
  const auto scalar = [&](const std::string& name) {
    if (!ckpt.has(name)) throw Error(ErrorKind::not_found, "W8A8 checkpoint has no " + name);
    return ckpt.tensor(name).to(at::kFloat).flatten()[0].item<double>();
  };
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (auto& [n, lin] : layers_[i].linears()) {
      const std::string p = "model.layers." + std::to_string(i) + "." + n;
      if (!ia.is_object() || !ckpt.has(p + ".weight_scale")) continue;
      const bool is_float = ia.value("type", "") == "float";
      if ((!is_float && ia.value("type", "") != "int") || ia.value("num_bits", 0) != 8 || !ia.value("symmetric", true))
        throw Error(ErrorKind::invalid_input, "W8A8 input activations other than FP8 or symmetric int8 are not read");
      const bool dynamic = ia.value("dynamic", false);
      lin->act.kind = is_float ? (dynamic ? ActQuant::Kind::fp8_token : ActQuant::Kind::fp8_tensor)
                               : (dynamic ? ActQuant::Kind::int_token : ActQuant::Kind::int_tensor);
      lin->act.bits = 8;
      if (!ia.value("dynamic", false)) lin->act.scale = scalar(p + ".input_scale");
    }
  if (qc.contains("kv_cache_scheme") && qc["kv_cache_scheme"].is_object()) {
    kv_quant_ = KvQuant{};
    kv_quant_.kind = KvQuant::Kind::fp8;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
      kv_quant_.k_scale.push_back(scalar(p + "k_scale"));
      kv_quant_.v_scale.push_back(scalar(p + "v_scale"));
    }
  }
}

std::vector<std::pair<std::string, at::Tensor*>> LlamaModel::parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out = {{"model.embed_tokens.weight", &embed_tokens_}};
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto& l = layers_[i];
    out.push_back({p + "input_layernorm.weight", &l.input_norm});
    out.push_back({p + "post_attention_layernorm.weight", &l.post_norm});
    for (auto& [name, lin] : l.linears()) {
      out.push_back({p + name + ".weight", &lin->weight});
      if (lin->bias.defined()) out.push_back({p + name + ".bias", &lin->bias});
    }
  }
  out.push_back({"model.norm.weight", &final_norm_});
  if (!config_.tie_word_embeddings) out.push_back({"lm_head.weight", &lm_head_});
  return out;
}

void LlamaModel::untie() {
  if (!config_.tie_word_embeddings) return;
  config_.tie_word_embeddings = false;
  lm_head_ = embed_tokens_.clone();
}

void LlamaModel::retie() {
  if (config_.tie_word_embeddings) lm_head_ = embed_tokens_;
}

at::Tensor LlamaModel::embed(const at::Tensor& ids) const {
  return at::embedding(embed_tokens_, ids.to(device_, at::kLong));
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  const auto x32 = x.to(at::kFloat);
  const auto var = x32.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (x32 * at::rsqrt(var + config_.rms_norm_eps)).to(x.scalar_type());
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

}  // namespace

namespace {

// A Linear, with its output handed to the hook under its HF module name.
at::Tensor run_linear(const Linear& l, const LinearHook* hook, const std::string& prefix, const char* name,
                      const at::Tensor& x) {
  at::Tensor y = l(x);
  if (hook) y = (*hook)(prefix + name, x, y);
  return y;
}

}  // namespace

at::Tensor LlamaModel::attention_forward(int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                                         const LinearHook* hook) const {
  const auto& c = config_;
  const DecoderLayer& L = layers_[static_cast<std::size_t>(li)];
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const char* name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const int64_t B = a.size(0), T = a.size(1), hd = c.head_dim;
  auto q = run(L.q_proj, "self_attn.q_proj", a).view({B, T, c.heads, hd}).transpose(1, 2);
  auto k = run(L.k_proj, "self_attn.k_proj", a).view({B, T, c.kv_heads, hd}).transpose(1, 2);
  auto v = run(L.v_proj, "self_attn.v_proj", a).view({B, T, c.kv_heads, hd}).transpose(1, 2);

  const auto positions = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kFloat).device(device_));
  const auto freqs = at::outer(positions, inv_freq_);  // [T, hd/2]
  const auto emb = at::cat({freqs, freqs}, -1);
  const auto cos = emb.cos().to(a.scalar_type());
  const auto sin = emb.sin().to(a.scalar_type());
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  // The cache holds (simulated) quantized keys and values.
  k = kv_quant_.apply(k, li, true);
  v = kv_quant_.apply(v, li, false);

  if (cache != nullptr) {
    if (cache->k.size() < layers_.size()) {
      cache->k.resize(layers_.size());
      cache->v.resize(layers_.size());
    }
    auto& ck = cache->k[static_cast<std::size_t>(li)];
    auto& cv = cache->v[static_cast<std::size_t>(li)];
    if (ck.defined()) {
      k = at::cat({ck, k}, 2);
      v = at::cat({cv, v}, 2);
    }
    ck = k;
    cv = v;
  }
  const int64_t S = k.size(2);
  const int64_t rep = c.heads / c.kv_heads;
  // Grouped-query attention without copying K/V: query head j reads KV head j / rep.
  const auto qg = q.reshape({B, c.kv_heads, rep, T, hd});
  const auto kg = k.unsqueeze(2);
  const auto vg = v.unsqueeze(2);
  // Causal mask: query at position pos0 + t sees keys at positions <= pos0 + t.
  const auto qpos = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(1);
  // Keys are this sequence's positions 0..S-1 (the cache holds the first pos0).
  const auto kpos = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(0);
  at::Tensor blocked = kpos > qpos;
  if (c.sliding_window) blocked = at::logical_or(blocked, (qpos - kpos) >= *c.sliding_window);
  const auto mask = at::zeros({T, S}, at::TensorOptions().dtype(at::kFloat).device(device_))
                        .masked_fill_(blocked, std::numeric_limits<float>::lowest());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const auto kt = kg.transpose(-1, -2);
  // Queries in chunks, so that a score block stays near 8 MiB: big enough
  // for efficient matmuls, small enough to be reused by the allocator
  // instead of mapped and faulted in per layer.
  const int64_t per_query = B * c.heads * S * 4;
  const int64_t chunk = std::clamp<int64_t>((8 << 20) / std::max<int64_t>(per_query, 1), 1, T);
  std::vector<at::Tensor> outs;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t tc = std::min(chunk, T - t0);
    auto scores = at::matmul(qg.narrow(3, t0, tc), kt);  // [B, KV, rep, tc, S]
    scores.mul_(scale);
    auto s32 = scores.to(at::kFloat);
    s32.add_(mask.narrow(0, t0, tc));
    const auto probs = at::softmax(s32, -1).to(q.scalar_type());
    outs.push_back(at::matmul(probs, vg));  // [B, KV, rep, tc, hd]
  }
  const auto attn_g = outs.size() == 1 ? outs[0] : at::cat(outs, 3);
  const auto attn = attn_g.reshape({B, c.heads, T, hd}).transpose(1, 2).reshape({B, T, c.heads * hd});
  return run(L.o_proj, "self_attn.o_proj", attn);
}

at::Tensor LlamaModel::mlp_forward(int64_t li, const at::Tensor& m, const LinearHook* hook) const {
  const DecoderLayer& L = layers_[static_cast<std::size_t>(li)];
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const char* name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const auto g = run(L.gate_proj, "mlp.gate_proj", m);
  const auto u = run(L.up_proj, "mlp.up_proj", m);
  return run(L.down_proj, "mlp.down_proj", at::silu(g) * u);
}

at::Tensor LlamaModel::layer_forward(int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                                     const LinearHook* hook) const {
  const DecoderLayer& L = layers_[static_cast<std::size_t>(li)];
  const auto h1 = h + attention_forward(li, rms_norm(h, L.input_norm), pos0, cache, hook);
  return h1 + mlp_forward(li, rms_norm(h1, L.post_norm), hook);
}

at::Tensor LlamaModel::head(const at::Tensor& h) const {
  return at::linear(rms_norm(h, final_norm_), lm_head_).to(at::kFloat);
}

at::Tensor LlamaModel::forward(const at::Tensor& ids, KVCache* cache, const LinearHook* hook) const {
  const int64_t pos0 = cache ? cache->length() : 0;
  at::Tensor h = embed(ids);
  for (int64_t i = 0; i < static_cast<int64_t>(layers_.size()); ++i) h = layer_forward(i, h, pos0, cache, hook);
  return head(h);
}

}  // namespace qjobs::model
