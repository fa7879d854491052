// Qwen2-MoE (Qwen2MoeForCausalLM): Qwen2's attention; layer L's MLP is
// sparse unless L is in mlp_only_layers or (L + 1) % decoder_sparse_step != 0.
// Routed experts (top num_experts_per_tok of a softmax, renormalized only
// with norm_topk_prob) plus a shared expert weighted by sigmoid(shared_expert_gate).
#include "jobs/model/model_config.hpp"

#include <algorithm>

#include "common/error.hpp"

namespace qjobs::model {

const Family& family_qwen2_moe() {
  static const Family f{
      .arch = Arch::qwen2_moe,
      .hf_class = "Qwen2MoeForCausalLM",
      .model_type = "qwen2_moe",
      .names = {.router = "mlp.gate",
                .expert_prefix = "mlp.experts.",
                .expert_gate = "gate_proj",
                .expert_up = "up_proj",
                .expert_down = "down_proj",
                .shared_prefix = "mlp.shared_expert.",
                .shared_gate = "mlp.shared_expert_gate"},
      .qkv_bias = true,
      .read_config = [](const nlohmann::json& j, ModelConfig& c) {
        c.moe.experts = config_int(j, "num_experts", 0, 1 << 16);
        c.moe.top_k = config_int(j, "num_experts_per_tok", 0, 1 << 16);
        c.moe.norm_topk_prob = j.value("norm_topk_prob", false);
        c.moe.expert_intermediate = config_int(j, "moe_intermediate_size", 1, 1 << 20);
        c.moe.shared_intermediate = j.contains("shared_expert_intermediate_size")
                                        ? config_int(j, "shared_expert_intermediate_size", 0, 1 << 20)
                                        : 0;
        const int64_t step = j.contains("decoder_sparse_step") ? config_int(j, "decoder_sparse_step", 1, c.layers) : 1;
        std::vector<int64_t> dense;
        if (j.contains("mlp_only_layers") && j["mlp_only_layers"].is_array())
          for (const auto& v : j["mlp_only_layers"]) {
            if (!v.is_number_integer() || static_cast<int64_t>(dense.size()) >= c.layers)
              throw Error(ErrorKind::invalid_input,
                          "config.json: 'mlp_only_layers' must list at most num_hidden_layers integers");
            dense.push_back(v.get<int64_t>());
          }
        for (int64_t l = 0; l < c.layers; ++l)
          c.moe.sparse_layers.push_back(c.moe.experts > 0 && std::find(dense.begin(), dense.end(), l) == dense.end() &&
                                        (l + 1) % step == 0);
        config_sliding_window(j, c, true);
      }};
  return f;
}

}  // namespace qjobs::model
