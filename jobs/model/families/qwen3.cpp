// Qwen3 (Qwen3ForCausalLM): Llama's block with an RMSNorm over each head of
// q and k (q_norm, k_norm) before RoPE; head_dim from the config.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_qwen3() {
  static const Family f{
      .arch = Arch::qwen3,
      .hf_class = "Qwen3ForCausalLM",
      .model_type = "qwen3",
      .names = {.q_norm = "self_attn.q_norm", .k_norm = "self_attn.k_norm"},
      // A per-channel scale on q or k changes what its norm divides by.
      .qk_scaling_folds = false,
      .read_config = [](const nlohmann::json& j, ModelConfig& c) { config_sliding_window(j, c, true); }};
  return f;
}

}  // namespace qjobs::model
