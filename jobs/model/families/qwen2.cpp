// Qwen2 (Qwen2ForCausalLM): Llama's block with q/k/v biases; a sliding
// window only with use_sliding_window.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_qwen2() {
  static const Family f{
      .arch = Arch::qwen2,
      .hf_class = "Qwen2ForCausalLM",
      .model_type = "qwen2",
      .names = {},
      .qkv_bias = true,
      .read_config = [](const nlohmann::json& j, ModelConfig& c) { config_sliding_window(j, c, true); }};
  return f;
}

}  // namespace qjobs::model
