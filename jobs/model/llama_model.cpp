#include "jobs/model/llama_model.hpp"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "common/error.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/mapped_file.hpp"

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

struct LlamaModel::Source {
  Checkpoint ckpt;
  nlohmann::json qc;

  // The tensor as stored (a view of the mapping), or the dequantized float32
  // weight of a quantized Linear; its shape checked against config.json's.
  at::Tensor stored(const std::string& name, const std::vector<int64_t>& shape) const {
    const std::string stem = name.size() > 7 ? name.substr(0, name.size() - 7) : name;
    const bool quantized = stem != name && name.compare(name.size() - 7, 7, ".weight") == 0 &&
                           exporter::is_quantized_linear(ckpt, stem, qc);
    at::Tensor t = quantized ? exporter::unpack_weight(ckpt, stem, qc) : ckpt.tensor(name);
    if (quantized)  // a new tensor: the packed parts it came from are not needed again
      for (const char* part : {"qweight", "qzeros", "scales", "g_idx", "weight_packed", "weight_scale",
                               "weight_zero_point", "weight_g_idx", "weight"})
        if (ckpt.has(stem + "." + part)) release_mapped(ckpt.tensor(stem + "." + part));
    check(name, t.sizes().vec(), shape);
    return t;
  }
  // Without reading data: the shape of a plain stored tensor (packed ones are checked when read).
  void check_stored(const std::string& name, const std::vector<int64_t>& shape) const {
    if (ckpt.has(name)) return check(name, ckpt.info(name).shape, shape);
    const std::string stem = name.size() > 7 ? name.substr(0, name.size() - 7) : name;
    if (!exporter::is_quantized_linear(ckpt, stem, qc)) ckpt.tensor(name);  // throws not_found
  }
  static void check(const std::string& name, const std::vector<int64_t>& got, const std::vector<int64_t>& want) {
    if (got == want) return;
    std::string w, g;
    for (auto d : want) w += (w.empty() ? "" : ",") + std::to_string(d);
    for (auto d : got) g += (g.empty() ? "" : ",") + std::to_string(d);
    throw Error(ErrorKind::data_corruption, "tensor '" + name + "' has shape [" + g + "], config.json implies [" + w + "]");
  }
};

namespace {

// Every tensor of a layer with its checkpoint name and config shape.
std::vector<std::tuple<std::string, std::vector<int64_t>, at::Tensor*>> layer_tensors(const ModelConfig& c, int64_t i,
                                                                                     DecoderLayer& l) {
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const int64_t q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  std::vector<std::tuple<std::string, std::vector<int64_t>, at::Tensor*>> out = {
      {p + "input_layernorm.weight", {c.hidden}, &l.input_norm},
      {p + "post_attention_layernorm.weight", {c.hidden}, &l.post_norm}};
  const auto linear = [&](const char* name, Linear& lin, int64_t o, int64_t in, bool bias) {
    out.emplace_back(p + name + ".weight", std::vector<int64_t>{o, in}, &lin.weight);
    if (bias) out.emplace_back(p + name + ".bias", std::vector<int64_t>{o}, &lin.bias);
  };
  linear("self_attn.q_proj", l.q_proj, q_out, c.hidden, c.qkv_bias);
  linear("self_attn.k_proj", l.k_proj, kv_out, c.hidden, c.qkv_bias);
  linear("self_attn.v_proj", l.v_proj, kv_out, c.hidden, c.qkv_bias);
  linear("self_attn.o_proj", l.o_proj, c.hidden, q_out, c.o_bias);
  linear("mlp.gate_proj", l.gate_proj, c.intermediate, c.hidden, c.mlp_bias);
  linear("mlp.up_proj", l.up_proj, c.intermediate, c.hidden, c.mlp_bias);
  linear("mlp.down_proj", l.down_proj, c.hidden, c.intermediate, c.mlp_bias);
  return out;
}

}  // namespace

LlamaModel LlamaModel::load(const Checkpoint& ckpt, const LoadOptions& o) {
  tune_allocator_once();
  LlamaModel m;
  m.config_ = ModelConfig::from_json(ckpt.config());
  m.dtype_ = o.dtype;
  m.device_ = o.device;
  m.devices_ = o.devices.empty() ? std::vector<at::Device>{o.device} : o.devices;
  m.stream_ = o.stream_layers;
  auto src = std::make_shared<Source>(Source{ckpt, ckpt.config().value("quantization_config", nlohmann::json::object())});
  m.src_ = src;
  const auto& c = m.config_;
  const auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    return src->stored(name, shape).to(o.device, o.dtype);
  };
  if (m.stream_) {
    // Read row by row (embed) and converted in chunks (head) where the
    // compute dtype or device differs; on a GPU lm_head is kept there.
    m.embed_tokens_ = src->stored("model.embed_tokens.weight", {c.vocab, c.hidden});
    m.final_norm_ = get("model.norm.weight", {c.hidden});
    const bool tied = c.tie_word_embeddings || !ckpt.has("lm_head.weight");
    const auto head = tied ? m.embed_tokens_ : src->stored("lm_head.weight", {c.vocab, c.hidden});
    m.lm_head_ = o.device.is_cpu() ? head : head.to(o.device, o.dtype);
  } else {
    m.embed_tokens_ = get("model.embed_tokens.weight", {c.vocab, c.hidden});
    m.final_norm_ = get("model.norm.weight", {c.hidden});
    if (c.tie_word_embeddings || !ckpt.has("lm_head.weight"))
      m.lm_head_ = m.embed_tokens_;
    else
      m.lm_head_ = get("lm_head.weight", {c.vocab, c.hidden});
  }
  m.layers_.resize(static_cast<std::size_t>(c.layers));
  for (int64_t i = 0; i < c.layers; ++i)
    for (auto& [name, shape, t] : layer_tensors(c, i, m.layers_[static_cast<std::size_t>(i)])) {
      if (m.stream_)
        src->check_stored(name, shape);
      else
        *t = src->stored(name, shape).to(m.layer_device(i), o.dtype);
    }
  m.inv_freq_ = rope_inverse_frequencies(c).to(o.device);
  if (ckpt.config().contains("qjobs_quantization")) m.apply_simulated_quantization(ckpt.config()["qjobs_quantization"]);
  if (src->qc.is_object() && src->qc.value("quant_method", "") == "compressed-tensors") m.apply_compressed_schemes(ckpt, src->qc);
  return m;
}

at::Device LlamaModel::layer_device(int64_t layer) const {
  // Pipeline style: consecutive layers share a device, in order.
  const auto n = static_cast<int64_t>(devices_.size());
  return devices_[static_cast<std::size_t>(std::min(n - 1, layer * n / std::max<int64_t>(config_.layers, 1)))];
}

bool LlamaModel::resident(int64_t layer) const {
  return !stream_ || layers_[static_cast<std::size_t>(layer)].q_proj.weight.defined();
}

DecoderLayer LlamaModel::read_layer(int64_t layer, bool own) const {
  DecoderLayer l = layers_[static_cast<std::size_t>(layer)];  // the activation settings
  for (auto& [name, shape, t] : layer_tensors(config_, layer, l)) {
    const auto stored = src_->stored(name, shape);
    *t = stored.to(layer_device(layer), dtype_);
    const bool aliased = t->data_ptr() == stored.data_ptr();
    if (own && aliased) *t = t->clone();
    if (!aliased || own) release_mapped(stored);
  }
  return l;
}

void LlamaModel::onload(int64_t layer) {
  if (resident(layer)) return;
  layers_[static_cast<std::size_t>(layer)] = read_layer(layer, true);
}

void LlamaModel::offload(int64_t layer) {
  if (!stream_) return;
  auto& l = layers_[static_cast<std::size_t>(layer)];
  for (auto& [name, shape, t] : layer_tensors(config_, layer, l)) *t = at::Tensor();
}

int64_t LlamaModel::layer_bytes() const {
  const auto& c = config_;
  const int64_t q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  const int64_t params = 2 * c.hidden + c.hidden * (q_out + 2 * kv_out) + q_out * c.hidden + 3 * c.hidden * c.intermediate;
  return params * static_cast<int64_t>(c10::elementSize(dtype_));
}

const DecoderLayer& LlamaModel::use(int64_t layer) const {
  if (!resident(layer))
    throw Error(ErrorKind::internal, "layer " + std::to_string(layer) + " of a streamed model is used without onload()");
  return layers_[static_cast<std::size_t>(layer)];
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

void LlamaModel::apply_compressed_schemes(const Checkpoint& ckpt, const nlohmann::json& qc) {
  const auto scalar = [&](const std::string& name) {
    if (!ckpt.has(name)) throw Error(ErrorKind::not_found, "compressed-tensors checkpoint has no " + name);
    return ckpt.tensor(name).to(at::kFloat).flatten()[0].item<double>();
  };
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (auto& [n, lin] : layers_[i].linears()) {
      const std::string p = "model.layers." + std::to_string(i) + "." + n;
      const auto* group = exporter::scheme_group(qc, p);
      if (group == nullptr || !group->contains("input_activations") || (*group)["input_activations"].is_null()) continue;
      const auto& ia = (*group)["input_activations"];
      // Static scales: input_scale (per tensor), or NVFP4's input_global_scale.
      const bool nv = ia.is_object() && ia.value("strategy", "") == "tensor_group";
      const bool dynamic = ia.is_object() && ia.contains("dynamic") && !(ia["dynamic"].is_boolean() && !ia["dynamic"].get<bool>());
      const double s = nv ? scalar(p + ".input_global_scale") : dynamic ? 0.0 : scalar(p + ".input_scale");
      lin->act = exporter::activation_from_args(ia, s);
    }
  if (qc.contains("kv_cache_scheme") && qc["kv_cache_scheme"].is_object()) {
    const auto& kv = qc["kv_cache_scheme"];
    kv_quant_ = KvQuant{};
    if (kv.value("type", "float") == "int") {
      kv_quant_.kind = KvQuant::Kind::integer;
      kv_quant_.bits = kv.value("num_bits", 8);
      if (kv_quant_.bits < 2 || kv_quant_.bits > 8) throw Error(ErrorKind::invalid_input, "integer KV caches of 2 to 8 bits are read");
      kv_quant_.group = kv.contains("group_size") && kv["group_size"].is_number_integer() ? kv["group_size"].get<int64_t>() : 0;
      return;
    }
    if (kv.value("num_bits", 8) != 8) throw Error(ErrorKind::invalid_input, "float KV caches other than FP8 E4M3 are not read");
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
  // A streamed model's embedding stays where it is stored: only the rows read move.
  return at::embedding(embed_tokens_, ids.to(embed_tokens_.device(), at::kLong)).to(device_, dtype_);
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
  return attention(use(li), li, a, pos0, cache, hook);
}

at::Tensor LlamaModel::attention(const DecoderLayer& L, int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                                 const LinearHook* hook) const {
  const auto& c = config_;
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const char* name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const int64_t B = a.size(0), T = a.size(1), hd = c.head_dim;
  auto q = run(L.q_proj, "self_attn.q_proj", a).view({B, T, c.heads, hd}).transpose(1, 2);
  auto k = run(L.k_proj, "self_attn.k_proj", a).view({B, T, c.kv_heads, hd}).transpose(1, 2);
  auto v = run(L.v_proj, "self_attn.v_proj", a).view({B, T, c.kv_heads, hd}).transpose(1, 2);

  const auto positions = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kFloat).device(a.device()));
  const auto freqs = at::outer(positions, inv_freq_.to(a.device()));  // [T, hd/2]
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
  const auto qpos = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kLong).device(a.device())).unsqueeze(1);
  // Keys are this sequence's positions 0..S-1 (the cache holds the first pos0).
  const auto kpos = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(a.device())).unsqueeze(0);
  at::Tensor blocked = kpos > qpos;
  if (c.sliding_window) blocked = at::logical_or(blocked, (qpos - kpos) >= *c.sliding_window);
  const auto mask = at::zeros({T, S}, at::TensorOptions().dtype(at::kFloat).device(a.device()))
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
  return mlp(use(li), li, m, hook);
}

at::Tensor LlamaModel::mlp(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const {
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const char* name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const auto g = run(L.gate_proj, "mlp.gate_proj", m);
  const auto u = run(L.up_proj, "mlp.up_proj", m);
  return run(L.down_proj, "mlp.down_proj", at::silu(g) * u);
}

at::Tensor LlamaModel::block(const DecoderLayer& L, int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                             const LinearHook* hook) const {
  const auto h1 = h + attention(L, li, rms_norm(h, L.input_norm), pos0, cache, hook);
  return h1 + mlp(L, li, rms_norm(h1, L.post_norm), hook);
}

DecoderLayer LlamaModel::materialize(int64_t li) const {
  return resident(li) ? layers_[static_cast<std::size_t>(li)] : read_layer(li, false);
}

at::Tensor LlamaModel::run_layer(const DecoderLayer& L, int64_t li, const at::Tensor& h, int64_t pos0) const {
  return block(L, li, h.to(layer_device(li)), pos0, nullptr, nullptr);
}

void LlamaModel::release(DecoderLayer& L) const {
  if (!stream_) return;
  for (auto& [name, shape, t] : layer_tensors(config_, 0, L)) {
    release_mapped(*t);
    *t = at::Tensor();
  }
}

at::Tensor LlamaModel::layer_forward(int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                                     const LinearHook* hook) const {
  if (resident(li)) return block(layers_[static_cast<std::size_t>(li)], li, h.to(layer_device(li)), pos0, cache, hook);
  // Streamed and not onloaded: the layer for this call only, then its pages back.
  DecoderLayer L = read_layer(li, false);
  auto out = block(L, li, h.to(layer_device(li)), pos0, cache, hook);
  release(L);
  return out;
}

at::Tensor LlamaModel::head(const at::Tensor& h) const {
  const auto n = rms_norm(h.to(device_), final_norm_);
  if (lm_head_.device() == device_ && lm_head_.scalar_type() == dtype_) return at::linear(n, lm_head_).to(at::kFloat);
  // A streamed lm_head in another dtype: converted 64 MiB of rows at a time.
  const int64_t vocab = lm_head_.size(0), hidden = lm_head_.size(1);
  const int64_t rows = std::max<int64_t>(1, (int64_t{64} << 20) / (hidden * static_cast<int64_t>(c10::elementSize(dtype_))));
  auto sizes = n.sizes().vec();
  sizes.back() = vocab;
  auto out = at::empty(sizes, n.options().dtype(at::kFloat));
  for (int64_t v0 = 0; v0 < vocab; v0 += rows) {
    const int64_t cnt = std::min(rows, vocab - v0);
    const auto part = lm_head_.narrow(0, v0, cnt);
    out.narrow(-1, v0, cnt).copy_(at::linear(n, part.to(device_, dtype_)));
    release_mapped(part);
  }
  return out;
}

at::Tensor LlamaModel::forward(const at::Tensor& ids, KVCache* cache, const LinearHook* hook) const {
  const int64_t pos0 = cache ? cache->length() : 0;
  at::Tensor h = embed(ids);
  for (int64_t i = 0; i < static_cast<int64_t>(layers_.size()); ++i) h = layer_forward(i, h, pos0, cache, hook);
  return head(h);
}

}  // namespace qjobs::model
