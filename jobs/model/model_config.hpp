// config.json of a decoder checkpoint: the keys every family shares, read
// here, and what its family's table (family.hpp) adds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/model/family.hpp"

namespace qjobs::model {

struct RopeScaling {
  std::string type;  // "" (none), "llama3", "linear", "longrope"
  double factor = 1.0;
  double low_freq_factor = 1.0;          // llama3
  double high_freq_factor = 4.0;         // llama3
  int64_t original_max_position = 8192;  // llama3, longrope
  // longrope: per-frequency divisors [head_dim / 2], the long ones used
  // when a forward pass reaches past original_max_position; cos and sin are
  // scaled by `attention_factor`.
  std::vector<double> short_factor, long_factor;
  double attention_factor = 1.0;
};

enum class Activation { silu, gelu_tanh };

// Mixture-of-experts MLP (Mixtral, Qwen2-MoE): `experts` routed experts of
// width `expert_intermediate`, `top_k` per token, their router
// probabilities renormalized over the k when `norm_topk_prob`.
struct MoeConfig {
  int64_t experts = 0;
  int64_t top_k = 0;
  bool norm_topk_prob = true;
  int64_t expert_intermediate = 0;
  int64_t shared_intermediate = 0;  // 0 = no shared expert
  std::vector<bool> sparse_layers;  // per layer: MoE (true) or a dense MLP
};

struct ModelConfig {
  const Family* family = nullptr;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;  // config.head_dim, else hidden / heads
  int64_t vocab = 0;
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2, or Llama's attention_bias
  bool o_bias = false;    // Llama's attention_bias
  bool mlp_bias = false;
  std::optional<int64_t> sliding_window;  // set only when the architecture applies it
  std::vector<bool> sliding_layers;       // per layer when only some slide (Gemma-2); empty = all
  Activation activation = Activation::silu;
  double norm_offset = 0.0;    // RMSNorm multiplies by (offset + weight): Gemma's 1
  double embed_scale = 1.0;    // embeddings times this (Gemma: sqrt(hidden) in float32)
  double attn_scale = 0.0;     // score scale; 0 = head_dim^-0.5
  double attn_softcap = 0.0;   // scores s -> cap * tanh(s / cap) before the mask; 0 = none
  double final_softcap = 0.0;  // the same on the logits
  MoeConfig moe;
  std::string torch_dtype = "float32";
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;

  // Throws Error(invalid_input) naming the key, or listing the known
  // architectures when `architectures` names none of them. Bounded in time
  // and memory for any input (the server runs it on a submitted model's
  // config.json).
  static ModelConfig from_json(const nlohmann::json& j);

  const Family& fam() const { return *family; }
  bool slides(int64_t layer) const {
    return sliding_window && (sliding_layers.empty() || sliding_layers[static_cast<std::size_t>(layer)]);
  }
  bool sparse(int64_t layer) const {
    return !moe.sparse_layers.empty() && moe.sparse_layers[static_cast<std::size_t>(layer)];
  }

 private:
  static ModelConfig read(const nlohmann::json& j);  // from_json without the conversion of json errors
};

// One quantized decoder Linear of a model: its name without ".weight"
// ("model.layers.3.mlp.experts.5.w1") and its widths, from the family's
// table and the config. The same Linears, in the same order, as the
// model's layers list (llama_model.hpp, quantized_linear_weights), without
// libtorch: the server plans and checks exports with them.
struct DecoderLinear {
  std::string name;
  int64_t in = 0;
  int64_t out = 0;
  int64_t layer = 0;
  // Within the layer, as DecoderLayer::slots() has them: the name (without
  // the layer's prefix) of the first Linear reading the same input, its
  // role, and for a routed expert its index (-1 otherwise).
  std::string input;
  enum class Role { q, k, v, qkv, o, gate, up, gate_up, down } role = Role::q;
  int64_t expert = -1;
};
std::vector<DecoderLinear> decoder_linears(const ModelConfig& c);

// What EXPORT_FORMAT `format` cannot hold of a model of config `c`, or
// nullopt: gguf and onnx write Llama-layout graphs (llama.cpp's llama
// architecture; qjobs' ONNX prefill graph, which has no longrope either), so a
// fused, sandwich-normed, q/k-normed or mixture-of-experts block is refused
// for them, naming compressed-tensors. The one statement of that rule: the
// writers, the worker before it quantizes and the server at submission ask it.
std::optional<std::string> export_layout_problem(const ModelConfig& c, std::string_view format);

// Helpers for the families' read_config: the key as the type asked for,
// or Error(invalid_input) naming it. config.json is untrusted (the server
// reads it at submission): an integer outside [lo, hi] is refused, so that
// no count taken from it sizes a loop or an allocation without a bound.
int64_t config_int(const nlohmann::json& j, const char* key, int64_t lo = 0, int64_t hi = int64_t{1} << 40);
double config_number(const nlohmann::json& j, const char* key, double def);
// sliding_window into c.sliding_window when it is a number (and, with
// `only_if_used`, when use_sliding_window is true: Qwen's convention).
void config_sliding_window(const nlohmann::json& j, ModelConfig& c, bool only_if_used = false);

}  // namespace qjobs::model
