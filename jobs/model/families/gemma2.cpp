// Gemma-2 (Gemma2ForCausalLM): embeddings times sqrt(hidden); RMSNorm by
// (1 + weight); sandwich norms around attention and MLP; scores scaled by
// query_pre_attn_scalar^-0.5 and soft-capped; a sliding window on even
// layers; GELU-tanh MLP; soft-capped logits; lm_head tied by default.
#include "jobs/model/model_config.hpp"

#include <cmath>

namespace qjobs::model {

const Family& family_gemma2() {
  static const Family f{
      .arch = Arch::gemma2,
      .hf_class = "Gemma2ForCausalLM",
      .model_type = "gemma2",
      .names = {.attn_norm = "input_layernorm",
                .mlp_norm = "pre_feedforward_layernorm",
                .attn_out_norm = "post_attention_layernorm",
                .mlp_out_norm = "post_feedforward_layernorm"},
      // A norm with a weight on a block's output does not commute with a rotation.
      .rotation_folds = false,
      .read_config = [](const nlohmann::json& j, ModelConfig& c) {
        c.norm_offset = 1.0;
        c.embed_scale = static_cast<double>(static_cast<float>(std::sqrt(static_cast<double>(c.hidden))));
        c.attn_scale = 1.0 / std::sqrt(config_number(j, "query_pre_attn_scalar", static_cast<double>(c.head_dim)));
        c.attn_softcap = config_number(j, "attn_logit_softcapping", 0.0);
        c.final_softcap = config_number(j, "final_logit_softcapping", 0.0);
        c.tie_word_embeddings = j.value("tie_word_embeddings", true);
        config_sliding_window(j, c);
        if (c.sliding_window)
          for (int64_t l = 0; l < c.layers; ++l) c.sliding_layers.push_back(l % 2 == 0);
      }};
  return f;
}

}  // namespace qjobs::model
