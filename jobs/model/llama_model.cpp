#include "jobs/model/llama_model.hpp"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include <ATen/ops/scaled_dot_product_attention.h>

#include "common/error.hpp"
#include "common/strings.hpp"
#include "jobs/model/quantized_checkpoint.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/mapped_file.hpp"

namespace qjobs::model {

at::Tensor Linear::operator()(const at::Tensor& x) const { return at::linear(act.apply(x), weight, bias); }

std::vector<LinearSlot> DecoderLayer::slots() {
  const auto& n = family->names;
  std::vector<LinearSlot> out;
  const auto add = [&](const std::string& name, Linear& l, LinearRole role, const std::string& input,
                       int64_t expert = -1, bool quantized = true) {
    out.push_back({name, &l, role, expert, input, quantized});
  };
  if (!n.qkv.empty()) {
    add(n.qkv, qkv_proj, LinearRole::qkv, n.qkv);
  } else {
    add(n.q, q_proj, LinearRole::q, n.q);
    add(n.k, k_proj, LinearRole::k, n.q);
    add(n.v, v_proj, LinearRole::v, n.q);
  }
  add(n.o, o_proj, LinearRole::o, n.o);
  const auto glu = [&](const std::string& prefix, Expert& e, int64_t index) {
    const std::string g = prefix + n.expert_gate;
    add(g, e.gate_proj, LinearRole::expert_gate, g, index);
    add(prefix + n.expert_up, e.up_proj, LinearRole::expert_up, g, index);
    add(prefix + n.expert_down, e.down_proj, LinearRole::expert_down, prefix + n.expert_down, index);
  };
  if (sparse) {
    add(n.router, router, LinearRole::router, n.router, -1, false);
    for (std::size_t e = 0; e < experts.size(); ++e)
      glu(n.expert_prefix + std::to_string(e) + ".", experts[e], static_cast<int64_t>(e));
    if (!n.shared_prefix.empty()) {
      glu(n.shared_prefix, shared, -1);
      add(n.shared_gate, shared_gate, LinearRole::shared_gate, n.router, -1, false);
    }
  } else if (!n.gate_up.empty()) {
    add(n.gate_up, gate_up_proj, LinearRole::gate_up, n.gate_up);
    add(n.down, down_proj, LinearRole::down, n.down);
  } else {
    add(n.gate, gate_proj, LinearRole::gate, n.gate);
    add(n.up, up_proj, LinearRole::up, n.gate);
    add(n.down, down_proj, LinearRole::down, n.down);
  }
  return out;
}

std::vector<std::pair<std::string, Linear*>> DecoderLayer::linears() {
  std::vector<std::pair<std::string, Linear*>> out;
  for (auto& s : slots())
    if (s.quantized) out.emplace_back(s.name, s.linear);
  return out;
}

std::map<std::string, std::string> DecoderLayer::input_sources() {
  std::map<std::string, std::string> out;
  for (auto& s : slots())
    if (s.quantized) out[s.name] = s.input;
  return out;
}

std::vector<std::string> DecoderLayer::input_names() {
  std::vector<std::string> out;
  for (auto& s : slots())
    if (std::find(out.begin(), out.end(), s.input) == out.end()) out.push_back(s.input);
  return out;
}

std::vector<std::vector<std::string>> DecoderLayer::sequential_groups() {
  std::vector<std::vector<std::string>> out(4);
  for (auto& s : slots()) {
    if (!s.quantized) continue;
    switch (s.role) {
      case LinearRole::q:
      case LinearRole::k:
      case LinearRole::v:
      case LinearRole::qkv:
        out[0].push_back(s.name);
        break;
      case LinearRole::o:
        out[1].push_back(s.name);
        break;
      case LinearRole::gate:
      case LinearRole::up:
      case LinearRole::gate_up:
      case LinearRole::expert_gate:
      case LinearRole::expert_up:
        out[2].push_back(s.name);
        break;
      default:
        out[3].push_back(s.name);
    }
  }
  return out;
}

bool DecoderLayer::feeds_scores(const std::string& name) {
  for (auto& s : slots())
    if (s.name == name) return s.role == LinearRole::q || s.role == LinearRole::k || s.role == LinearRole::qkv;
  return false;
}

std::vector<NormReaders> DecoderLayer::norm_groups() {
  NormReaders attn{&input_norm, {}, ""}, mlp{&post_norm, {}, ""};
  for (auto& s : slots()) {
    const bool attention =
        s.role == LinearRole::q || s.role == LinearRole::k || s.role == LinearRole::v || s.role == LinearRole::qkv;
    const bool mlp_input = s.role == LinearRole::gate || s.role == LinearRole::up || s.role == LinearRole::gate_up ||
                           s.role == LinearRole::router || s.role == LinearRole::shared_gate ||
                           s.role == LinearRole::expert_gate || s.role == LinearRole::expert_up;
    if (attention) attn.readers.push_back(s);
    if (mlp_input) mlp.readers.push_back(s);
  }
  attn.input = attn.readers.front().input;
  // A sparse block's full MLP input is the router's (an expert's capture holds its tokens only).
  mlp.input = sparse ? family->names.router : mlp.readers.front().input;
  return {attn, mlp};
}

std::vector<LinearPair> DecoderLayer::linear_pairs(const ModelConfig& c) {
  std::vector<LinearPair> out;
  const int64_t kv_rows = c.kv_heads * c.head_dim;
  const auto& n = family->names;
  if (c.kv_heads == c.heads) {
    if (n.qkv.empty()) out.push_back({n.v, &v_proj, 0, kv_rows, n.o, &o_proj});
    else out.push_back({n.qkv, &qkv_proj, c.heads * c.head_dim + kv_rows, kv_rows, n.o, &o_proj});
  }
  if (!sparse) {
    if (n.gate_up.empty()) out.push_back({n.up, &up_proj, 0, c.intermediate, n.down, &down_proj});
    else out.push_back({n.gate_up, &gate_up_proj, c.intermediate, c.intermediate, n.down, &down_proj});
    return out;
  }
  for (std::size_t e = 0; e < experts.size(); ++e) {
    const std::string p = n.expert_prefix + std::to_string(e) + ".";
    out.push_back({p + n.expert_up, &experts[e].up_proj, 0, c.moe.expert_intermediate, p + n.expert_down,
                   &experts[e].down_proj, static_cast<int64_t>(e)});
  }
  if (!n.shared_prefix.empty())
    out.push_back({n.shared_prefix + n.expert_up, &shared.up_proj, 0, c.moe.shared_intermediate,
                   n.shared_prefix + n.expert_down, &shared.down_proj});
  return out;
}

namespace {

// float32 [head_dim / 2] inverse frequencies of longrope with these divisors.
at::Tensor longrope_inverse_frequencies(const ModelConfig& c, const std::vector<double>& factors) {
  const auto dim = c.head_dim;
  const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  const auto ext = at::tensor(std::vector<float>(factors.begin(), factors.end()));
  return at::reciprocal(ext * at::pow(c.rope_theta, exponents));
}

}  // namespace

at::Tensor rope_inverse_frequencies(const ModelConfig& c) {
  const auto dim = c.head_dim;
  const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv = at::reciprocal(at::pow(c.rope_theta, exponents));
  const auto& s = c.rope_scaling;
  if (s.type == "longrope") {  // the short factors; the long ones apply past original_max_position
    inv = longrope_inverse_frequencies(c, s.short_factor);
  } else if (s.type == "linear") {
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
    const std::string stem = weight_stem(name);
    const bool quantized = !stem.empty() && is_quantized_linear(ckpt, stem, qc);
    at::Tensor t = quantized ? unpack_weight(ckpt, stem, qc) : ckpt.tensor(name);
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
    const std::string stem = weight_stem(name);
    if (stem.empty() || !is_quantized_linear(ckpt, stem, qc)) ckpt.tensor(name);  // throws not_found
  }
  static void check(const std::string& name, const std::vector<int64_t>& got, const std::vector<int64_t>& want) {
    if (got == want) return;
    std::string w, g;
    for (auto d : want) w += (w.empty() ? "" : ",") + std::to_string(d);
    for (auto d : got) g += (g.empty() ? "" : ",") + std::to_string(d);
    throw Error(ErrorKind::data_corruption,
                "tensor '" + name + "' has shape [" + g + "], config.json implies [" + w + "]");
  }
};

namespace {

// Every tensor of a layer with its checkpoint name and config shape: the
// family's norms, then its Linears (weight, and bias where the config has one).
std::vector<std::tuple<std::string, std::vector<int64_t>, at::Tensor*>> layer_tensors(const ModelConfig& c, int64_t i,
                                                                                      DecoderLayer& l) {
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const auto& n = c.fam().names;
  std::vector<std::tuple<std::string, std::vector<int64_t>, at::Tensor*>> out;
  const auto norm = [&](const std::string& name, at::Tensor& t, int64_t size) {
    if (!name.empty()) out.emplace_back(p + name + ".weight", std::vector<int64_t>{size}, &t);
  };
  norm(n.attn_norm, l.input_norm, c.hidden);
  norm(n.q_norm, l.q_norm, c.head_dim);
  norm(n.k_norm, l.k_norm, c.head_dim);
  norm(n.attn_out_norm, l.attn_out_norm, c.hidden);
  norm(n.mlp_norm, l.post_norm, c.hidden);
  norm(n.mlp_out_norm, l.mlp_out_norm, c.hidden);
  const int64_t q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  const int64_t ei = c.moe.expert_intermediate, si = c.moe.shared_intermediate;
  for (auto& s : l.slots()) {
    int64_t o = 0, in = c.hidden;
    bool bias = false;
    switch (s.role) {
      case LinearRole::q:
        o = q_out;
        bias = c.qkv_bias;
        break;
      case LinearRole::k:
      case LinearRole::v:
        o = kv_out;
        bias = c.qkv_bias;
        break;
      case LinearRole::qkv:
        o = q_out + 2 * kv_out;
        bias = c.qkv_bias;
        break;
      case LinearRole::o:
        o = c.hidden;
        in = q_out;
        bias = c.o_bias;
        break;
      case LinearRole::gate:
      case LinearRole::up:
        o = c.intermediate;
        bias = c.mlp_bias;
        break;
      case LinearRole::gate_up:
        o = 2 * c.intermediate;
        bias = c.mlp_bias;
        break;
      case LinearRole::down:
        o = c.hidden;
        in = c.intermediate;
        bias = c.mlp_bias;
        break;
      case LinearRole::router:
        o = c.moe.experts;
        break;
      case LinearRole::expert_gate:
      case LinearRole::expert_up:
        o = s.expert < 0 ? si : ei;
        break;
      case LinearRole::expert_down:
        o = c.hidden;
        in = s.expert < 0 ? si : ei;
        break;
      case LinearRole::shared_gate:
        o = 1;
        break;
    }
    out.emplace_back(p + s.name + ".weight", std::vector<int64_t>{o, in}, &s.linear->weight);
    if (bias) out.emplace_back(p + s.name + ".bias", std::vector<int64_t>{o}, &s.linear->bias);
  }
  return out;
}

// A layer with the structure its family and config give it, no tensors yet.
DecoderLayer empty_layer(const ModelConfig& c, int64_t i) {
  DecoderLayer l;
  l.family = c.family;
  l.sparse = c.sparse(i);
  if (l.sparse) l.experts.resize(static_cast<std::size_t>(c.moe.experts));
  return l;
}

}  // namespace

std::vector<std::string> quantized_linear_weights(const ModelConfig& c) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < c.layers; ++i) {
    auto l = empty_layer(c, i);
    for (const auto& [name, lin] : l.linears())
      out.push_back("model.layers." + std::to_string(i) + "." + name + ".weight");
  }
  return out;
}

std::vector<std::string> full_precision_linears(const ModelConfig& c) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < c.layers; ++i) {
    auto l = empty_layer(c, i);
    for (const auto& s : l.slots())
      if (!s.quantized) out.push_back("model.layers." + std::to_string(i) + "." + s.name);
  }
  return out;
}

LlamaModel LlamaModel::load(const Checkpoint& ckpt, const LoadOptions& o) {
  tune_allocator_once();
  LlamaModel m;
  m.config_ = ModelConfig::from_json(ckpt.config());
  m.dtype_ = o.dtype;
  m.device_ = o.device;
  m.fused_attention_ = o.fused_attention;
  m.devices_ = o.devices.empty() ? std::vector<at::Device>{o.device} : o.devices;
  m.stream_ = o.stream_layers;
  auto src =
      std::make_shared<Source>(Source{ckpt, ckpt.config().value("quantization_config", nlohmann::json::object())});
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
    if (c.tie_word_embeddings || !ckpt.has("lm_head.weight")) m.lm_head_ = m.embed_tokens_;
    else m.lm_head_ = get("lm_head.weight", {c.vocab, c.hidden});
  }
  for (int64_t i = 0; i < c.layers; ++i) m.layers_.push_back(empty_layer(c, i));
  for (int64_t i = 0; i < c.layers; ++i)
    for (auto& [name, shape, t] : layer_tensors(c, i, m.layers_[static_cast<std::size_t>(i)])) {
      if (m.stream_) src->check_stored(name, shape);
      else *t = src->stored(name, shape).to(m.layer_device(i), o.dtype);
    }
  m.inv_freq_ = rope_inverse_frequencies(c).to(o.device);
  if (c.rope_scaling.type == "longrope")
    m.inv_freq_long_ = longrope_inverse_frequencies(c, c.rope_scaling.long_factor).to(o.device);
  if (!o.simulate_quantization) return m;
  if (ckpt.config().contains("qjobs_quantization")) m.apply_simulated_quantization(ckpt.config()["qjobs_quantization"]);
  if (src->qc.is_object() && src->qc.value("quant_method", "") == "compressed-tensors")
    m.apply_compressed_schemes(ckpt, src->qc);
  return m;
}

at::Device LlamaModel::layer_device(int64_t layer) const {
  // Pipeline style: consecutive layers share a device, in order.
  const auto n = static_cast<int64_t>(devices_.size());
  return devices_[static_cast<std::size_t>(std::min(n - 1, layer * n / std::max<int64_t>(config_.layers, 1)))];
}

bool LlamaModel::resident(int64_t layer) const {
  return !stream_ || layers_[static_cast<std::size_t>(layer)].o_proj.weight.defined();
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
  // The largest block: with dense and sparse layers mixed, the bigger one.
  int64_t params = 0;
  for (int64_t i = 0; i < config_.layers; ++i) {
    auto l = empty_layer(config_, i);
    int64_t n = 0;
    for (auto& [name, shape, t] : layer_tensors(config_, i, l)) {
      int64_t e = 1;
      for (auto d : shape) e *= d;
      n += e;
    }
    params = std::max(params, n);
  }
  return params * static_cast<int64_t>(c10::elementSize(dtype_));
}

const DecoderLayer& LlamaModel::use(int64_t layer) const {
  if (!resident(layer))
    throw Error(ErrorKind::internal,
                "layer " + std::to_string(layer) + " of a streamed model is used without onload()");
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
      const auto* group = scheme_group(qc, p);
      if (group == nullptr || !group->contains("input_activations") || (*group)["input_activations"].is_null())
        continue;
      const auto& ia = (*group)["input_activations"];
      // Static scales: input_scale (per tensor), or NVFP4's input_global_scale.
      const bool nv = ia.is_object() && ia.value("strategy", "") == "tensor_group";
      const bool dynamic =
          ia.is_object() && ia.contains("dynamic") && !(ia["dynamic"].is_boolean() && !ia["dynamic"].get<bool>());
      const double s = nv ? scalar(p + ".input_global_scale") : dynamic ? 0.0 : scalar(p + ".input_scale");
      lin->act = activation_from_args(ia, s);
    }
  if (qc.contains("kv_cache_scheme") && qc["kv_cache_scheme"].is_object()) {
    const auto& kv = qc["kv_cache_scheme"];
    kv_quant_ = KvQuant{};
    if (kv.value("type", "float") == "int") {
      kv_quant_.kind = KvQuant::Kind::integer;
      kv_quant_.bits = kv.value("num_bits", 8);
      if (kv_quant_.bits < 2 || kv_quant_.bits > 8)
        throw Error(ErrorKind::invalid_input, "integer KV caches of 2 to 8 bits are read");
      kv_quant_.group =
          kv.contains("group_size") && kv["group_size"].is_number_integer() ? kv["group_size"].get<int64_t>() : 0;
      return;
    }
    if (kv.value("num_bits", 8) != 8)
      throw Error(ErrorKind::invalid_input, "float KV caches other than FP8 E4M3 are not read");
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
  for (std::size_t i = 0; i < layers_.size(); ++i)
    for (auto& [name, shape, t] : layer_tensors(config_, static_cast<int64_t>(i), layers_[i])) out.push_back({name, t});
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
  auto h = at::embedding(embed_tokens_, ids.to(embed_tokens_.device(), at::kLong)).to(device_, dtype_);
  // Gemma: times sqrt(hidden), rounded to the compute dtype first as HF does.
  if (config_.embed_scale != 1.0) h = h * at::scalar_tensor(config_.embed_scale, h.options()).item();
  return h;
}

at::Tensor LlamaModel::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  const auto x32 = x.to(at::kFloat);
  const auto var = x32.pow(2).mean(-1, /*keepdim=*/true);
  const auto normed = x32 * at::rsqrt(var + config_.rms_norm_eps);
  if (config_.norm_offset != 0.0) return (normed * (weight.to(at::kFloat) + config_.norm_offset)).to(x.scalar_type());
  return weight * normed.to(x.scalar_type());
}

void LlamaModel::scale_norm(at::Tensor& w, const at::Tensor& s) const {
  const double off = config_.norm_offset;
  const auto s_ = s.to(w.device(), at::kFloat);
  w = off == 0.0 ? w * s_.to(w.scalar_type()) : ((w.to(at::kFloat) + off) * s_ - off).to(w.scalar_type());
}

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// A Linear, with its output handed to the hook under its HF module name.
at::Tensor run_linear(const Linear& l, const LinearHook* hook, const std::string& prefix, const std::string& name,
                      const at::Tensor& x) {
  at::Tensor y = l(x);
  if (hook) y = (*hook)(prefix + name, x, y);
  return y;
}

at::Tensor activation(Activation a, const at::Tensor& x) {
  return a == Activation::gelu_tanh ? at::gelu(x, "tanh") : at::silu(x);
}

at::Tensor softcap(const at::Tensor& x, double cap) { return at::tanh(x / cap) * cap; }

}  // namespace

at::Tensor LlamaModel::attention_forward(int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                                         const LinearHook* hook) const {
  return attention(use(li), li, a, pos0, cache, hook);
}

at::Tensor LlamaModel::attention(const DecoderLayer& L, int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                                 const LinearHook* hook) const {
  const auto& c = config_;
  const auto& n = c.fam().names;
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const std::string& name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const int64_t B = a.size(0), T = a.size(1), hd = c.head_dim;
  at::Tensor q, k, v;
  if (!n.qkv.empty()) {  // fused rows q | k | v
    const auto y = run(L.qkv_proj, n.qkv, a);
    q = y.narrow(-1, 0, c.heads * hd);
    k = y.narrow(-1, c.heads * hd, c.kv_heads * hd);
    v = y.narrow(-1, (c.heads + c.kv_heads) * hd, c.kv_heads * hd);
  } else {
    q = run(L.q_proj, n.q, a);
    k = run(L.k_proj, n.k, a);
    v = run(L.v_proj, n.v, a);
  }
  q = q.reshape({B, T, c.heads, hd});
  k = k.reshape({B, T, c.kv_heads, hd});
  if (L.q_norm.defined()) q = rms_norm(q, L.q_norm);
  if (L.k_norm.defined()) k = rms_norm(k, L.k_norm);
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  v = v.reshape({B, T, c.kv_heads, hd}).transpose(1, 2);

  // longrope: the long factors for a pass reaching past the original
  // context, for all of its positions (as transformers decides per call).
  const bool long_rope = inv_freq_long_.defined() && pos0 + T > c.rope_scaling.original_max_position;
  const auto& inv = long_rope ? inv_freq_long_ : inv_freq_;
  const auto positions = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kFloat).device(a.device()));
  const auto freqs = at::outer(positions, inv.to(a.device()));  // [T, hd/2]
  const auto emb = at::cat({freqs, freqs}, -1);
  const double mscale = c.rope_scaling.type == "longrope" ? c.rope_scaling.attention_factor : 1.0;
  const auto cos = (emb.cos() * mscale).to(a.scalar_type());
  const auto sin = (emb.sin() * mscale).to(a.scalar_type());
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
  const double scale = c.attn_scale > 0 ? c.attn_scale : 1.0 / std::sqrt(static_cast<double>(hd));
  // Causal mask: query at position pos0 + t sees keys at positions <= pos0 + t.
  const auto qpos = at::arange(pos0, pos0 + T, at::TensorOptions().dtype(at::kLong).device(a.device())).unsqueeze(1);
  // Keys are this sequence's positions 0..S-1 (the cache holds the first pos0).
  const auto kpos = at::arange(0, S, at::TensorOptions().dtype(at::kLong).device(a.device())).unsqueeze(0);
  const bool slides = c.slides(li);
  at::Tensor blocked = kpos > qpos;
  if (slides) blocked = at::logical_or(blocked, (qpos - kpos) >= *c.sliding_window);
  if (fused_attention_ && c.attn_softcap <= 0) {
    // One fused call, K/V heads shared by their query groups (enable_gqa);
    // a whole causal window without a cache needs no mask (is_causal), which
    // lets the kernels skip the blocked half.
    const bool plain_causal = pos0 == 0 && S == T && !slides;
    const auto out = plain_causal
                         ? at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, true, scale, true)
                         : at::scaled_dot_product_attention(q, k, v, blocked.logical_not(), 0.0, false, scale, true);
    return run(L.o_proj, n.o, out.transpose(1, 2).reshape({B, T, c.heads * hd}));
  }
  const int64_t rep = c.heads / c.kv_heads;
  // Grouped-query attention without copying K/V: query head j reads KV head j / rep.
  const auto qg = q.reshape({B, c.kv_heads, rep, T, hd});
  const auto kg = k.unsqueeze(2);
  const auto vg = v.unsqueeze(2);
  const auto mask = at::zeros({T, S}, at::TensorOptions().dtype(at::kFloat).device(a.device()))
                        .masked_fill_(blocked, std::numeric_limits<float>::lowest());
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
    if (c.attn_softcap > 0) s32 = softcap(s32, c.attn_softcap);  // before the mask, as Gemma-2
    s32.add_(mask.narrow(0, t0, tc));
    const auto probs = at::softmax(s32, -1).to(q.scalar_type());
    outs.push_back(at::matmul(probs, vg));  // [B, KV, rep, tc, hd]
  }
  const auto attn_g = outs.size() == 1 ? outs[0] : at::cat(outs, 3);
  const auto attn = attn_g.reshape({B, c.heads, T, hd}).transpose(1, 2).reshape({B, T, c.heads * hd});
  return run(L.o_proj, n.o, attn);
}

at::Tensor LlamaModel::mlp_forward(int64_t li, const at::Tensor& m, const LinearHook* hook) const {
  return mlp(use(li), li, m, hook);
}

at::Tensor LlamaModel::mlp(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const {
  if (L.sparse) return mixture(L, li, m, hook);
  const auto& n = config_.fam().names;
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const std::string& name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  at::Tensor g, u;
  if (!n.gate_up.empty()) {  // fused rows gate | up
    const auto y = run(L.gate_up_proj, n.gate_up, m);
    g = y.narrow(-1, 0, config_.intermediate);
    u = y.narrow(-1, config_.intermediate, config_.intermediate);
  } else {
    g = run(L.gate_proj, n.gate, m);
    u = run(L.up_proj, n.up, m);
  }
  return run(L.down_proj, n.down, activation(config_.activation, g) * u);
}

at::Tensor LlamaModel::mixture(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const {
  const auto& c = config_;
  const auto& n = c.fam().names;
  const std::string prefix = hook ? "model.layers." + std::to_string(li) + "." : "";
  const auto run = [&](const Linear& l, const std::string& name, const at::Tensor& x) {
    return run_linear(l, hook, prefix, name, x);
  };
  const auto expert = [&](const Expert& e, const std::string& p, const at::Tensor& x) {
    const auto g = run(e.gate_proj, p + n.expert_gate, x);
    const auto u = run(e.up_proj, p + n.expert_up, x);
    return run(e.down_proj, p + n.expert_down, activation(c.activation, g) * u);
  };
  const auto x = m.reshape({-1, m.size(-1)});
  // Router: softmax over all experts in float32, the top k kept (and
  // renormalized over the k where the config says so).
  const auto probs = at::softmax(run(L.router, n.router, x).to(at::kFloat), -1);
  auto [top_p, top_i] = at::topk(probs, c.moe.top_k, -1);
  if (c.moe.norm_topk_prob) top_p = top_p / top_p.sum(-1, true);
  top_p = top_p.to(x.scalar_type());
  auto out = at::zeros_like(x);
  for (int64_t e = 0; e < static_cast<int64_t>(L.experts.size()); ++e) {
    const auto chosen = top_i == e;                         // [N, k], at most one true per row
    const auto rows = chosen.any(-1).nonzero().squeeze(1);  // the tokens routed to e
    const auto weight = (top_p * chosen.to(top_p.scalar_type())).sum(-1).index_select(0, rows).unsqueeze(1);
    // Run even with no token: the hook sees every expert (with 0 rows).
    const auto y = expert(L.experts[static_cast<std::size_t>(e)], n.expert_prefix + std::to_string(e) + ".",
                          x.index_select(0, rows));
    out.index_add_(0, rows, y * weight);
  }
  if (!n.shared_prefix.empty())
    out = out + at::sigmoid(run(L.shared_gate, n.shared_gate, x)) * expert(L.shared, n.shared_prefix, x);
  return out.reshape(m.sizes());
}

at::Tensor LlamaModel::expert_hidden(const Expert& e, const at::Tensor& x) const {
  return activation(config_.activation, e.gate_proj(x)) * e.up_proj(x);
}

at::Tensor LlamaModel::block(const DecoderLayer& L, int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                             const LinearHook* hook) const {
  auto a = attention(L, li, rms_norm(h, L.input_norm), pos0, cache, hook);
  if (L.attn_out_norm.defined()) a = rms_norm(a, L.attn_out_norm);
  const auto h1 = h + a;
  auto f = mlp(L, li, rms_norm(h1, L.post_norm), hook);
  if (L.mlp_out_norm.defined()) f = rms_norm(f, L.mlp_out_norm);
  return h1 + f;
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
  const auto capped = [&](at::Tensor logits) {
    return config_.final_softcap > 0 ? softcap(logits, config_.final_softcap) : logits;
  };
  if (lm_head_.device() == device_ && lm_head_.scalar_type() == dtype_)
    return capped(at::linear(n, lm_head_).to(at::kFloat));
  // A streamed lm_head in another dtype: converted 64 MiB of rows at a time.
  const int64_t vocab = lm_head_.size(0), hidden = lm_head_.size(1);
  const int64_t rows =
      std::max<int64_t>(1, (int64_t{64} << 20) / (hidden * static_cast<int64_t>(c10::elementSize(dtype_))));
  auto sizes = n.sizes().vec();
  sizes.back() = vocab;
  auto out = at::empty(sizes, n.options().dtype(at::kFloat));
  for (int64_t v0 = 0; v0 < vocab; v0 += rows) {
    const int64_t cnt = std::min(rows, vocab - v0);
    const auto part = lm_head_.narrow(0, v0, cnt);
    out.narrow(-1, v0, cnt).copy_(at::linear(n, part.to(device_, dtype_)));
    release_mapped(part);
  }
  return capped(out);
}

at::Tensor LlamaModel::forward(const at::Tensor& ids, KVCache* cache, const LinearHook* hook) const {
  const int64_t pos0 = cache ? cache->length() : 0;
  at::Tensor h = embed(ids);
  for (int64_t i = 0; i < static_cast<int64_t>(layers_.size()); ++i) h = layer_forward(i, h, pos0, cache, hook);
  return head(h);
}

}  // namespace qjobs::model
