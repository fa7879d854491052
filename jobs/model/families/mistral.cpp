// Mistral (MistralForCausalLM): Llama's block with a sliding window on every layer.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_mistral() {
  static const Family f{.arch = Arch::mistral,
                        .hf_class = "MistralForCausalLM",
                        .model_type = "mistral",
                        .names = {},
                        .read_config = [](const nlohmann::json& j, ModelConfig& c) {
                          if (j.contains("sliding_window") && !j["sliding_window"].is_null())
                            c.sliding_window = config_int(j, "sliding_window");
                        }};
  return f;
}

}  // namespace qjobs::model
