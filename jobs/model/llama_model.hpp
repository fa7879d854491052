// The decoder of every family in family.hpp on ATen, computing what Hugging
// Face transformers computes (eager attention):
//   h = embed(ids) * embed_scale; per layer:
//     h += out_norm1(o(attn(rope(qn(q(n1(h)))), rope(kn(k(n1(h)))), v(n1(h)))));
//     h += out_norm2(mlp(n2(h)));   mlp = down(act(gate(x)) * up(x)), or the
//                                   top-k mixture of such experts (+ a shared one)
//   logits = softcap(lm_head(norm(h))).
// The family's table says which of these parts a block has. RMSNorm runs in
// float32 and casts back; RoPE is rotate-half with float32 tables; the
// causal mask is finfo(float32).min; router and attention softmax are float32.
//
// Tensors are [batch, time, hidden] in the compute dtype unless stated;
// logits come back float32. Resident (the default): weights are views of the
// mapped checkpoint when its dtype is the compute dtype and the device is the
// CPU (no copy), else converted once at load. Streamed: the decoder layers
// stay in the mapped checkpoint in their stored dtype and are put on the
// device in the compute dtype only while used (onload() .. offload(), or the
// span of one layer_forward()), so memory holds one layer whatever the depth.
// Thread safety: const methods may run concurrently; mutation (quantizing a
// layer in place, onload, offload) needs exclusive access.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "jobs/model/act_quant.hpp"
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

class Checkpoint;

struct Linear {
  at::Tensor weight;                                 // [out_features, in_features]
  at::Tensor bias;                                   // [out_features] or undefined
  ActQuant act;                                      // simulated input quantization (none by default)
  at::Tensor operator()(const at::Tensor& x) const;  // linear(act.apply(x))
};

// What a Linear of a block is for; its shape follows from the role.
enum class LinearRole {
  q,
  k,
  v,
  qkv,
  o,
  gate,
  up,
  gate_up,
  down,
  router,
  expert_gate,
  expert_up,
  expert_down,
  shared_gate
};

struct Expert {
  Linear gate_proj, up_proj, down_proj;
};

// A Linear of a block as its family's table names it.
struct LinearSlot {
  std::string name;  // inside the layer: "self_attn.q_proj", "block_sparse_moe.experts.3.w1"
  Linear* linear = nullptr;
  LinearRole role;
  int64_t expert = -1;    // routed expert index; -1 otherwise (the shared expert too)
  std::string input;      // the slot whose captured input this Linear reads (q/k/v read q's)
  bool quantized = true;  // false: routers and the shared expert's gate stay in full precision
};

// One decoder block. Which members are set follows the family's table
// (family.hpp): fused projections live in qkv_proj / gate_up_proj, a
// sparse block's MLP in router / experts / shared, sandwich and q/k norms
// only where the family has them (undefined otherwise).
// A norm and every Linear that reads its output: what scaling the norm's
// output channels by 1/s and the readers' input columns by s leaves unchanged.
struct NormReaders {
  at::Tensor* norm = nullptr;
  std::vector<LinearSlot> readers;  // routers included (their `quantized` is false)
  std::string input;                // the slot whose capture is the norm's full output
};

// A Linear whose output rows [row0, row0 + rows) feed `next` alone (v -> o,
// up -> down, an expert's up -> its down): scaling those rows by 1/s and
// next's input columns by s leaves the block unchanged.
struct LinearPair {
  std::string prev_name;
  Linear* prev = nullptr;
  int64_t row0 = 0, rows = 0;
  std::string next_name;
  Linear* next = nullptr;
  int64_t expert = -1;
};

struct DecoderLayer {
  at::Tensor input_norm;      // [hidden], in front of attention
  at::Tensor post_norm;       // [hidden], in front of the MLP
  at::Tensor attn_out_norm;   // [hidden], on attention's output (Gemma-2)
  at::Tensor mlp_out_norm;    // [hidden], on the MLP's output (Gemma-2)
  at::Tensor q_norm, k_norm;  // [head_dim] (Qwen3)
  Linear q_proj, k_proj, v_proj, qkv_proj, o_proj;
  Linear gate_proj, up_proj, gate_up_proj, down_proj;
  Linear router;  // [experts, hidden]
  std::vector<Expert> experts;
  Expert shared;       // the shared expert (Qwen2-MoE)
  Linear shared_gate;  // [1, hidden]
  const Family* family = nullptr;
  bool sparse = false;  // the MLP is the mixture of experts

  // Every Linear in forward order, routers included.
  std::vector<LinearSlot> slots();
  // The quantized Linears with their names inside the layer ("self_attn.q_proj").
  std::vector<std::pair<std::string, Linear*>> linears();
  // Which captured input each quantized Linear reads, by name (q/k/v share
  // q's, an expert's gate and up share its gate's), and the distinct inputs
  // of every Linear (a sparse block's router's: the MLP's full input).
  std::map<std::string, std::string> input_sources();
  std::vector<std::string> input_names();
  // Linears that can be handled one after another, each group reading the
  // outputs of the groups before it: attention inputs, o, the MLP's inputs,
  // its outputs (experts included).
  std::vector<std::vector<std::string>> sequential_groups();
  // Which Linears' output feeds attention scores (q, k, fused qkv).
  bool feeds_scores(const std::string& name);
  // The attention's input norm with its readers, then the MLP's.
  std::vector<NormReaders> norm_groups();
  // v -> o (only when heads == kv_heads, as each o column reads one v row),
  // then up -> down per expert or dense MLP.
  std::vector<LinearPair> linear_pairs(const ModelConfig& c);
};

// Keys and values of earlier positions, per layer: [batch, kv_heads, time, head_dim].
struct KVCache {
  std::vector<at::Tensor> k;
  std::vector<at::Tensor> v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

// Sees every Linear's input and output by its HF module name
// ("model.layers.3.mlp.down_proj") and returns the output to use.
using LinearHook = std::function<at::Tensor(const std::string& name, const at::Tensor& x, const at::Tensor& y)>;

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;  // compute dtype: kFloat, kBFloat16 or kHalf
  at::Device device = at::kCPU;
  // Decoder layers onloaded one at a time (see above); the embedding is read
  // row by row and lm_head, where it must be converted on the CPU, in chunks.
  bool stream_layers = false;
  // More than one device (a job given GPUs "0,1"): resident layers are
  // split across them in order, pipeline style; embedding and head stay on
  // `device`, which should be devices[0]. Empty = `device` only.
  std::vector<at::Device> devices;
  // Attention through at::scaled_dot_product_attention (the fused kernels of
  // libtorch 2.x: flash attention on the CPU and on GPUs), except where a
  // family needs what it cannot do (Gemma-2's logit soft-capping). false:
  // the eager path (scores, float32 softmax, values), for reference checks.
  bool fused_attention = true;
  // The activation and KV-cache quantization the checkpoint records is
  // simulated. false: its weights alone, as the reference loaders run them
  // (the verify stage compares those).
  bool simulate_quantization = true;
};

class LlamaModel {
 public:
  // Throws Error(invalid_input) for an unsupported config and
  // Error(not_found) naming a missing tensor. A config.json with
  // "qjobs_quantization" activations / kv_cache gets them simulated. The first call raises glibc's
  // mmap threshold to 32 MiB so activations are reused, not re-faulted.
  static LlamaModel load(const Checkpoint& ckpt, const LoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  at::Device device() const { return device_; }
  // Every layer; a streamed model's layers hold tensors only while onloaded
  // (their simulated activation quantization always).
  std::vector<DecoderLayer>& layers() { return layers_; }
  const std::vector<DecoderLayer>& layers() const { return layers_; }
  bool streamed() const { return stream_; }
  at::Device layer_device(int64_t layer) const;
  bool resident(int64_t layer) const;
  // Streamed models: puts layer `layer` on the device in the compute dtype
  // (its own copy: editing it never touches the checkpoint) and gives the
  // mapped pages it was read from back; offload() frees it again, keeping
  // its activation settings. Both are no-ops on a resident model.
  void onload(int64_t layer);
  void offload(int64_t layer);
  // The compute-dtype bytes of one decoder layer.
  int64_t layer_bytes() const;
  // For a caller that runs one layer over many inputs (evaluation block by
  // block): the layer in the compute dtype on its device (resident: the
  // model's own), run_layer() to apply it, release() to give the mapped
  // pages it may alias back once done.
  DecoderLayer materialize(int64_t layer) const;
  at::Tensor run_layer(const DecoderLayer& L, int64_t layer, const at::Tensor& h, int64_t pos0 = 0) const;
  void release(DecoderLayer& L) const;

  // ids: int64 [B, T] -> float32 logits [B, T, vocab]. With a cache, the ids
  // continue the cached positions and the cache grows by T.
  at::Tensor forward(const at::Tensor& ids, KVCache* cache = nullptr, const LinearHook* hook = nullptr) const;

  // The pieces of forward, for block-by-block calibration. attention_forward
  // and mlp_forward need the layer resident (onloaded when streamed).
  at::Tensor embed(const at::Tensor& ids) const;
  at::Tensor layer_forward(int64_t layer, const at::Tensor& h, int64_t pos0, KVCache* cache = nullptr,
                           const LinearHook* hook = nullptr) const;
  at::Tensor head(const at::Tensor& h) const;  // final norm + lm_head, float32
  // The two halves of a layer, on already-normalized inputs: attention
  // through o_proj, and the MLP through down_proj.
  at::Tensor attention_forward(int64_t layer, const at::Tensor& a, int64_t pos0, KVCache* cache = nullptr,
                               const LinearHook* hook = nullptr) const;
  at::Tensor mlp_forward(int64_t layer, const at::Tensor& m, const LinearHook* hook = nullptr) const;
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;
  // An expert's down_proj input: act(gate(x)) * up(x).
  at::Tensor expert_hidden(const Expert& e, const at::Tensor& x) const;

  // Every weight by its checkpoint name. A tied lm_head is not listed (it is
  // the embedding); call retie() after replacing the embedding tensor.
  std::vector<std::pair<std::string, at::Tensor*>> parameters();
  void retie();

  // The tensors outside the decoder layers, for function-preserving
  // transforms (jobs/quant/transforms).
  at::Tensor& embed_tokens() { return embed_tokens_; }
  at::Tensor& final_norm() { return final_norm_; }
  at::Tensor& lm_head() { return lm_head_; }
  // Gives lm_head its own copy of a tied embedding (config().tie_word_embeddings
  // becomes false), so the two can change apart.
  void untie();

  // Simulated KV-cache quantization (none by default).
  const KvQuant& kv_quant() const { return kv_quant_; }
  void set_kv_quant(KvQuant q) { kv_quant_ = std::move(q); }
  // Applies a "qjobs_quantization" config's activations and kv_cache
  // (act_quant.hpp). Throws Error(invalid_input) naming an unknown Linear.
  void apply_simulated_quantization(const nlohmann::json& qjobs_quantization);
  // A compressed-tensors checkpoint's input activations, per Linear from its
  // config group (input_scale / input_global_scale when static), and its KV
  // cache: FP8 (k_scale / v_scale per layer) or integer.
  void apply_compressed_schemes(const Checkpoint& ckpt, const nlohmann::json& quantization_config);

  // float32 [head_dim / 2]: the RoPE inverse frequencies after scaling.
  const at::Tensor& rope_inv_freq() const { return inv_freq_; }

  // RMSNorm weights in the family's convention (Gemma multiplies by 1 + w):
  // `w` becomes the weight whose effective scale is the old one times `s`.
  void scale_norm(at::Tensor& w, const at::Tensor& s) const;

 private:
  DecoderLayer read_layer(int64_t layer, bool own) const;
  const DecoderLayer& use(int64_t layer) const;
  at::Tensor attention(const DecoderLayer& L, int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                       const LinearHook* hook) const;
  at::Tensor mlp(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const;
  at::Tensor mixture(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const;
  at::Tensor block(const DecoderLayer& L, int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                   const LinearHook* hook) const;

  struct Source;  // the checkpoint a streamed model reads
  std::shared_ptr<const Source> src_;
  bool stream_ = false;
  std::vector<at::Device> devices_;
  ModelConfig config_;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  bool fused_attention_ = true;
  at::Tensor embed_tokens_;  // [vocab, hidden]
  at::Tensor final_norm_;
  at::Tensor lm_head_;  // [vocab, hidden]; embed_tokens_ when tied
  std::vector<DecoderLayer> layers_;
  at::Tensor inv_freq_;
  at::Tensor inv_freq_long_;  // longrope: past original_max_position; undefined otherwise
  KvQuant kv_quant_;
};

// The weight names ("model.layers.N.self_attn.q_proj.weight") of every
// Linear weight quantization touches, as the family's table lists them, in
// block order: routers, embeddings, norms and lm_head are not among them.
std::vector<std::string> quantized_linear_weights(const ModelConfig& c);
// The Linear modules the table keeps in full precision ("model.layers.0.
// block_sparse_moe.gate"): what a compressed-tensors config must ignore.
std::vector<std::string> full_precision_linears(const ModelConfig& c);

// The RoPE inverse frequencies HF computes for `c` (float32).
at::Tensor rope_inverse_frequencies(const ModelConfig& c);

}  // namespace qjobs::model
