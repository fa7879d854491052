// One table per architecture (jobs/model/families/<name>.cpp): the tensor
// names of a decoder block by role, which fusions and extras the family
// has, what its config.json adds, and which function-preserving transforms
// its block allows. The model, calibration, the algorithms and the exports
// ask the table; none of them names a tensor of a family.
//
// Adding a family: one file in families/ that defines `family_<name>()`,
// and one line X(name) in QJOBS_FAMILIES below.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::model {

struct ModelConfig;

#define QJOBS_FAMILIES(X) \
  X(llama)                \
  X(mistral)              \
  X(qwen2)                \
  X(mixtral)              \
  X(qwen2_moe)            \
  X(phi3)                 \
  X(gemma2)               \
  X(qwen3)

enum class Arch {
#define QJOBS_FAMILY_ENUM(name) name,
  QJOBS_FAMILIES(QJOBS_FAMILY_ENUM)
#undef QJOBS_FAMILY_ENUM
};

// Tensor names inside "model.layers.N." (without ".weight"). An empty name
// means the family has no such tensor.
struct BlockNames {
  std::string attn_norm = "input_layernorm";          // before attention
  std::string mlp_norm = "post_attention_layernorm";  // before the MLP
  std::string attn_out_norm;                          // on attention's output (Gemma-2's sandwich)
  std::string mlp_out_norm;                           // on the MLP's output
  std::string q = "self_attn.q_proj", k = "self_attn.k_proj", v = "self_attn.v_proj";
  std::string qkv;  // fused rows q | k | v (Phi-3); then q, k, v are unused
  std::string o = "self_attn.o_proj";
  std::string q_norm, k_norm;  // RMSNorm over each head's head_dim (Qwen3)
  std::string gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj";
  std::string gate_up;  // fused rows gate | up (Phi-3); then gate, up are unused
  // Mixture of experts: the router [experts, hidden], expert e's Linears
  // as expert_prefix + e + "." + expert_gate / expert_up / expert_down.
  std::string router;
  std::string expert_prefix;
  std::string expert_gate, expert_up, expert_down;
  // A shared expert beside the routed ones (Qwen2-MoE): its Linears as
  // shared_prefix + gate / up / down of the dense names' last component,
  // weighted per token by sigmoid(shared_gate(x)).
  std::string shared_prefix;
  std::string shared_gate;
};

struct Family {
  Arch arch;
  std::string hf_class;    // "LlamaForCausalLM"
  std::string model_type;  // "llama"
  BlockNames names;
  bool qkv_bias = false;  // q/k/v carry a bias by construction (Qwen2)
  // Residual-stream rotations (QuaRot / SpinQuant) fold into this block:
  // every writer to the residual and every norm in front of a reader can
  // take them. Sandwich norms on a block's outputs cannot.
  bool rotation_folds = true;
  // Per-channel scales between q and k outputs (QoQ's SmoothAttention) are
  // function-preserving: nothing between the projection and RoPE (a q/k norm
  // is not).
  bool qk_scaling_folds = true;
  // Reads the keys of config.json this family adds or interprets its own
  // way (sliding window, soft caps, experts...) into `c`, after the keys
  // every family shares. Throws Error(invalid_input) naming the key.
  void (*read_config)(const nlohmann::json& j, ModelConfig& c) = nullptr;

  bool moe() const { return !names.router.empty(); }
  // Llama's block exactly: separate q/k/v and gate/up, a dense SiLU MLP, two
  // norms, no extras. What the exports and transforms written for Llama take.
  bool llama_layout() const;
};

// Every family, in QJOBS_FAMILIES order.
const std::vector<const Family*>& families();
// The family of a config.json (`architectures[0]`, else `model_type`), or
// Error(invalid_input) listing the known ones.
const Family& family_of(const nlohmann::json& config);

#define QJOBS_FAMILY_DECL(name) const Family& family_##name();
QJOBS_FAMILIES(QJOBS_FAMILY_DECL)
#undef QJOBS_FAMILY_DECL

}  // namespace qjobs::model
