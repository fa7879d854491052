// config.json of a Llama-family checkpoint, read through one table of known
// architectures (model_config.cpp, kArchitectures).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::model {

enum class Arch { llama, mistral, qwen2 };

struct ArchInfo {
  Arch arch;
  std::string hf_class;        // "LlamaForCausalLM"
  std::string model_type;      // "llama"
  bool qkv_bias;               // q/k/v projections carry a bias by construction
};

const std::vector<ArchInfo>& architectures();

struct RopeScaling {
  std::string type;                 // "" (none), "llama3", "linear"
  double factor = 1.0;
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct ModelConfig {
  ArchInfo arch;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;             // config.head_dim, else hidden / heads
  int64_t vocab = 0;
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;            // Qwen2, or Llama's attention_bias
  bool o_bias = false;              // Llama's attention_bias
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // set only when the architecture applies it
  std::string torch_dtype = "float32";
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;

  // Throws Error(invalid_input) naming the key, or listing the known
  // architectures when `architectures` names none of them.
  static ModelConfig from_json(const nlohmann::json& j);
};

}  // namespace qjobs::model
