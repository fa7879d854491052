// Mixtral (MixtralForCausalLM): Llama's attention; every MLP is
// block_sparse_moe, softmax routing over num_local_experts with the top
// num_experts_per_tok renormalized; experts w1 (gate), w3 (up), w2 (down).
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_mixtral() {
  static const Family f{.arch = Arch::mixtral,
                        .hf_class = "MixtralForCausalLM",
                        .model_type = "mixtral",
                        .names = {.gate = "",
                                  .up = "",
                                  .down = "",
                                  .router = "block_sparse_moe.gate",
                                  .expert_prefix = "block_sparse_moe.experts.",
                                  .expert_gate = "w1",
                                  .expert_up = "w3",
                                  .expert_down = "w2"},
                        .read_config = [](const nlohmann::json& j, ModelConfig& c) {
                          c.moe.experts = config_int(j, "num_local_experts", 1, 1 << 16);
                          c.moe.top_k = config_int(j, "num_experts_per_tok", 1, 1 << 16);
                          c.moe.norm_topk_prob = true;
                          c.moe.expert_intermediate = c.intermediate;
                          c.moe.sparse_layers.assign(static_cast<std::size_t>(c.layers), true);
                          config_sliding_window(j, c);
                        }};
  return f;
}

}  // namespace qjobs::model
