#include "jobs/model/model_config.hpp"

#include "common/error.hpp"

namespace qjobs::model {

const std::vector<ArchInfo>& architectures() {
  static const std::vector<ArchInfo> table = {
      {Arch::llama, "LlamaForCausalLM", "llama", false},
      {Arch::mistral, "MistralForCausalLM", "mistral", false},
      {Arch::qwen2, "Qwen2ForCausalLM", "qwen2", true},
  };
  return table;
}

namespace {

int64_t require_int(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number_integer())
    throw Error(ErrorKind::invalid_input, std::string("config.json: '") + key + "' must be an integer");
  return j[key].get<int64_t>();
}

double number_or(const nlohmann::json& j, const char* key, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number())
    throw Error(ErrorKind::invalid_input, std::string("config.json: '") + key + "' must be a number");
  return j[key].get<double>();
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  ModelConfig c;
  std::string cls;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
    cls = j["architectures"][0].get<std::string>();
  const std::string type = j.value("model_type", "");
  const ArchInfo* found = nullptr;
  for (const auto& a : architectures())
    if (a.hf_class == cls || (cls.empty() && a.model_type == type)) found = &a;
  if (found == nullptr) {
    std::string known;
    for (const auto& a : architectures()) known += (known.empty() ? "" : ", ") + a.hf_class;
    throw Error(ErrorKind::invalid_input, "config.json: architecture '" + (cls.empty() ? type : cls) +
                                              "' is not supported (known: " + known + ")");
  }
  c.arch = *found;
  c.hidden = require_int(j, "hidden_size");
  c.intermediate = require_int(j, "intermediate_size");
  c.layers = require_int(j, "num_hidden_layers");
  c.heads = require_int(j, "num_attention_heads");
  c.kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                   ? require_int(j, "num_key_value_heads")
                   : c.heads;
  c.head_dim = j.contains("head_dim") && !j["head_dim"].is_null() ? require_int(j, "head_dim") : c.hidden / c.heads;
  c.vocab = require_int(j, "vocab_size");
  if (j.contains("max_position_embeddings")) c.max_position = require_int(j, "max_position_embeddings");
  c.rms_norm_eps = number_or(j, "rms_norm_eps", 1e-6);
  c.rope_theta = number_or(j, "rope_theta", 10000.0);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.torch_dtype = j.contains("torch_dtype") && j["torch_dtype"].is_string() ? j["torch_dtype"].get<std::string>() : "float32";
  if (c.heads % c.kv_heads != 0)
    throw Error(ErrorKind::invalid_input, "config.json: num_attention_heads must be a multiple of num_key_value_heads");
  const std::string act = j.value("hidden_act", "silu");
  if (act != "silu") throw Error(ErrorKind::invalid_input, "config.json: hidden_act '" + act + "' is not supported (silu only)");

  const bool attention_bias = j.value("attention_bias", false);
  c.qkv_bias = c.arch.qkv_bias || attention_bias;
  c.o_bias = attention_bias;
  c.mlp_bias = j.value("mlp_bias", false);

  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer()) {
    const bool applies = c.arch.arch == Arch::mistral ||
                         (c.arch.arch == Arch::qwen2 && j.value("use_sliding_window", false));
    if (applies) c.sliding_window = j["sliding_window"].get<int64_t>();
  }

  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const auto& r = j["rope_scaling"];
    c.rope_scaling.type = r.value("rope_type", r.value("type", ""));
    if (c.rope_scaling.type == "default") c.rope_scaling.type.clear();
    c.rope_scaling.factor = number_or(r, "factor", 1.0);
    c.rope_scaling.low_freq_factor = number_or(r, "low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = number_or(r, "high_freq_factor", 4.0);
    if (r.contains("original_max_position_embeddings"))
      c.rope_scaling.original_max_position = r["original_max_position_embeddings"].get<int64_t>();
    if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "llama3" && c.rope_scaling.type != "linear")
      throw Error(ErrorKind::invalid_input,
                  "config.json: rope_scaling type '" + c.rope_scaling.type + "' is not supported (llama3, linear)");
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id")) {
    if (j["eos_token_id"].is_number_integer()) c.eos_token_ids.push_back(j["eos_token_id"].get<int64_t>());
    else if (j["eos_token_id"].is_array())
      for (const auto& e : j["eos_token_id"]) c.eos_token_ids.push_back(e.get<int64_t>());
  }
  return c;
}

}  // namespace qjobs::model
