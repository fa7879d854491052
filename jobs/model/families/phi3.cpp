// Phi-3 (Phi3ForCausalLM): fused qkv_proj (rows q | k | v) and gate_up_proj
// (rows gate | up); longrope where rope_scaling says so; a sliding window
// on every layer when sliding_window is set.
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

const Family& family_phi3() {
  static const Family f{
      .arch = Arch::phi3,
      .hf_class = "Phi3ForCausalLM",
      .model_type = "phi3",
      .names =
          {.q = "", .k = "", .v = "", .qkv = "self_attn.qkv_proj", .gate = "", .up = "", .gate_up = "mlp.gate_up_proj"},
      .read_config = [](const nlohmann::json& j, ModelConfig& c) { config_sliding_window(j, c); }};
  return f;
}

}  // namespace qjobs::model
