// Mistral (MistralForCausalLM): Llama's block with a sliding window on every layer.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_mistral() {
  static const Family f{.arch = Arch::mistral,
                        .hf_class = "MistralForCausalLM",
                        .model_type = "mistral",
                        .names = {},
                        .read_config = [](const nlohmann::json& j, ModelConfig& c) { config_sliding_window(j, c); }};
  return f;
}

}  // namespace qjobs::model
