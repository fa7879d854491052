#include "jobs/model/model_config.hpp"

#include <cmath>

#include "common/error.hpp"

namespace qjobs::model {

namespace {

int64_t require_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
  return config_int(j, key, lo, hi);
}

// Bounds on the shape keys, far above any published model (Llama 3.1 405B:
// 126 layers, hidden 16384, 128 heads; Gemma's vocabulary 256000).
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxWidth = int64_t{1} << 20;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 30;
double number_or(const nlohmann::json& j, const char* key, double def) { return config_number(j, key, def); }

// Phi-3's longrope as transformers computes it: factors per frequency, and
// attention_factor sqrt(1 + ln(max / original) / ln(original)) unless given.
void read_longrope(const nlohmann::json& j, const nlohmann::json& r, ModelConfig& c) {
  auto& s = c.rope_scaling;
  const auto factors = [&](const char* key) {
    if (!r.contains(key) || !r[key].is_array() || static_cast<int64_t>(r[key].size()) != c.head_dim / 2)
      throw Error(ErrorKind::invalid_input, std::string("config.json: rope_scaling.") + key +
                                                " must list head_dim / 2 = " + std::to_string(c.head_dim / 2) +
                                                " numbers");
    std::vector<double> out;
    for (const auto& v : r[key]) {
      if (!v.is_number())
        throw Error(ErrorKind::invalid_input, std::string("config.json: rope_scaling.") + key + " must hold numbers");
      out.push_back(v.get<double>());
    }
    return out;
  };
  s.short_factor = factors("short_factor");
  s.long_factor = factors("long_factor");
  if (!r.contains("original_max_position_embeddings"))
    s.original_max_position = config_int(j, "original_max_position_embeddings", 1, kMaxPositions);
  const double ratio = static_cast<double>(c.max_position) / static_cast<double>(s.original_max_position);
  s.attention_factor =
      r.contains("attention_factor") && r["attention_factor"].is_number() ? r["attention_factor"].get<double>()
      : ratio <= 1.0                                                      ? 1.0
                     : std::sqrt(1.0 + std::log(ratio) / std::log(static_cast<double>(s.original_max_position)));
}

}  // namespace

int64_t config_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw Error(ErrorKind::invalid_input, std::string("config.json: '") + key + "' must be an integer");
  const auto v = j[key].get<int64_t>();
  if (v < lo || v > hi || (j[key].is_number_unsigned() && j[key].get<uint64_t>() > static_cast<uint64_t>(hi)))
    throw Error(ErrorKind::invalid_input, std::string("config.json: '") + key + "' is " + j[key].dump() + ", not in [" +
                                              std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

void config_sliding_window(const nlohmann::json& j, ModelConfig& c, bool only_if_used) {
  if (only_if_used && !j.value("use_sliding_window", false)) return;
  if (j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = config_int(j, "sliding_window", 1, kMaxPositions);
}

double config_number(const nlohmann::json& j, const char* key, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number())
    throw Error(ErrorKind::invalid_input, std::string("config.json: '") + key + "' must be a number");
  return j[key].get<double>();
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error(ErrorKind::invalid_input, "config.json is not a JSON object");
  try {
    return read(j);
  } catch (const nlohmann::json::exception& e) {
    // A key of the wrong type read through json::value or get.
    throw Error(ErrorKind::invalid_input, std::string("config.json: ") + e.what());
  }
}

ModelConfig ModelConfig::read(const nlohmann::json& j) {
  ModelConfig c;
  c.family = &family_of(j);
  c.hidden = require_int(j, "hidden_size", 1, kMaxWidth);
  c.intermediate = require_int(j, "intermediate_size", 1, kMaxWidth);
  c.layers = require_int(j, "num_hidden_layers", 1, kMaxLayers);
  c.heads = require_int(j, "num_attention_heads", 1, kMaxHeads);
  c.kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                   ? require_int(j, "num_key_value_heads", 1, c.heads)
                   : c.heads;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? require_int(j, "head_dim", 1, kMaxWidth)
                                                                  : c.hidden / c.heads;
  if (c.head_dim < 1)
    throw Error(ErrorKind::invalid_input, "config.json: hidden_size is smaller than num_attention_heads");
  c.vocab = require_int(j, "vocab_size", 1, kMaxVocab);
  if (j.contains("max_position_embeddings"))
    c.max_position = require_int(j, "max_position_embeddings", 1, kMaxPositions);
  c.rms_norm_eps = number_or(j, "rms_norm_eps", 1e-6);
  c.rope_theta = number_or(j, "rope_theta", 10000.0);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.torch_dtype =
      j.contains("torch_dtype") && j["torch_dtype"].is_string() ? j["torch_dtype"].get<std::string>() : "float32";
  if (c.heads % c.kv_heads != 0)
    throw Error(ErrorKind::invalid_input, "config.json: num_attention_heads must be a multiple of num_key_value_heads");
  // HF names the activation hidden_act, Gemma hidden_activation.
  const std::string act = j.contains("hidden_activation") && j["hidden_activation"].is_string()
                              ? j["hidden_activation"].get<std::string>()
                              : j.value("hidden_act", "silu");
  if (act == "silu") c.activation = Activation::silu;
  else if (act == "gelu_pytorch_tanh") c.activation = Activation::gelu_tanh;
  else
    throw Error(ErrorKind::invalid_input,
                "config.json: hidden_act '" + act + "' is not supported (silu, gelu_pytorch_tanh)");

  const bool attention_bias = j.value("attention_bias", false);
  c.qkv_bias = c.family->qkv_bias || attention_bias;
  c.o_bias = attention_bias;
  c.mlp_bias = j.value("mlp_bias", false);

  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const auto& r = j["rope_scaling"];
    c.rope_scaling.type = r.value("rope_type", r.value("type", ""));
    if (c.rope_scaling.type == "default") c.rope_scaling.type.clear();
    c.rope_scaling.factor = number_or(r, "factor", 1.0);
    c.rope_scaling.low_freq_factor = number_or(r, "low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = number_or(r, "high_freq_factor", 4.0);
    if (r.contains("original_max_position_embeddings"))
      c.rope_scaling.original_max_position = config_int(r, "original_max_position_embeddings", 1, kMaxPositions);
    if (c.rope_scaling.type == "longrope") read_longrope(j, r, c);
    else if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "llama3" && c.rope_scaling.type != "linear")
      throw Error(ErrorKind::invalid_input, "config.json: rope_scaling type '" + c.rope_scaling.type +
                                                "' is not supported (llama3, linear, longrope)");
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id")) {
    if (j["eos_token_id"].is_number_integer()) c.eos_token_ids.push_back(j["eos_token_id"].get<int64_t>());
    else if (j["eos_token_id"].is_array())
      for (const auto& e : j["eos_token_id"]) {
        if (!e.is_number_integer() || c.eos_token_ids.size() >= 64)
          throw Error(ErrorKind::invalid_input,
                      "config.json: 'eos_token_id' must be an integer or a list of at most 64 integers");
        c.eos_token_ids.push_back(e.get<int64_t>());
      }
  }
  // RoPE over part of each head (Phi-4-mini's 0.75) is not built: refused, not rotated wrongly.
  if (config_number(j, "partial_rotary_factor", 1.0) != 1.0)
    throw Error(ErrorKind::invalid_input, "config.json: partial_rotary_factor other than 1 is not supported");
  if (c.family->read_config) c.family->read_config(j, c);
  if (c.moe.experts > 0 && (c.moe.top_k < 1 || c.moe.top_k > c.moe.experts))
    throw Error(ErrorKind::invalid_input,
                "config.json: num_experts_per_tok must be between 1 and the number of experts (" +
                    std::to_string(c.moe.experts) + ")");
  return c;
}

std::optional<std::string> export_layout_problem(const ModelConfig& c, std::string_view format) {
  if (format != "gguf" && format != "onnx") return std::nullopt;
  const bool longrope = c.rope_scaling.type == "longrope";
  if (c.fam().llama_layout() && !(format == "onnx" && longrope)) return std::nullopt;
  const std::string what = format == "gguf" ? "the GGUF export writes llama.cpp's llama architecture"
                                            : "the ONNX export builds Llama-layout graphs (Llama, Mistral, Qwen2)";
  return what + "; " + c.fam().hf_class +
         (longrope && c.fam().llama_layout()
              ? " with longrope RoPE scaling is not built for it"
              : " has another block (fused, sandwich-normed, q/k-normed or mixture-of-experts)") +
         ": export it as compressed-tensors";
}

std::vector<DecoderLinear> decoder_linears(const ModelConfig& c) {
  using Role = DecoderLinear::Role;
  const auto& n = c.fam().names;
  const int64_t q = c.heads * c.head_dim, kv = c.kv_heads * c.head_dim;
  std::vector<DecoderLinear> out;
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string at = "model.layers." + std::to_string(i) + ".";
    const auto add = [&](const std::string& name, int64_t in, int64_t o, Role role, const std::string& input,
                         int64_t expert = -1) {
      out.push_back({at + name, in, o, i, input, role, expert});
    };
    if (!n.qkv.empty()) {
      add(n.qkv, c.hidden, q + 2 * kv, Role::qkv, n.qkv);
    } else {
      add(n.q, c.hidden, q, Role::q, n.q);
      add(n.k, c.hidden, kv, Role::k, n.q);
      add(n.v, c.hidden, kv, Role::v, n.q);
    }
    add(n.o, q, c.hidden, Role::o, n.o);
    const auto glu = [&](const std::string& prefix, int64_t width, int64_t expert) {
      const std::string g = prefix + n.expert_gate;
      add(g, c.hidden, width, Role::gate, g, expert);
      add(prefix + n.expert_up, c.hidden, width, Role::up, g, expert);
      add(prefix + n.expert_down, width, c.hidden, Role::down, prefix + n.expert_down, expert);
    };
    if (c.sparse(i)) {
      for (int64_t e = 0; e < c.moe.experts; ++e)
        glu(n.expert_prefix + std::to_string(e) + ".", c.moe.expert_intermediate, e);
      if (!n.shared_prefix.empty()) glu(n.shared_prefix, c.moe.shared_intermediate, -1);
    } else if (!n.gate_up.empty()) {
      add(n.gate_up, c.hidden, 2 * c.intermediate, Role::gate_up, n.gate_up);
      add(n.down, c.intermediate, c.hidden, Role::down, n.down);
    } else {
      add(n.gate, c.hidden, c.intermediate, Role::gate, n.gate);
      add(n.up, c.hidden, c.intermediate, Role::up, n.gate);
      add(n.down, c.intermediate, c.hidden, Role::down, n.down);
    }
  }
  return out;
}

}  // namespace qjobs::model
