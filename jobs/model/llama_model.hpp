// The Llama-family decoder (Llama, Mistral, Qwen2) on ATen, computing what
// Hugging Face transformers computes (eager attention):
//   h = embed(ids); per layer: h += o(attn(rope(q(n1(h))), rope(k(n1(h))), v(n1(h))));
//                              h += down(silu(gate(n2(h))) * up(n2(h)));
//   logits = lm_head(norm(h)).
// RMSNorm runs in float32 and casts back; RoPE is rotate-half with float32
// tables; the causal mask is finfo(float32).min; softmax is float32.
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
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "jobs/model/act_quant.hpp"
#include "jobs/model/model_config.hpp"

namespace qjobs::model {

class Checkpoint;

struct Linear {
  at::Tensor weight;  // [out_features, in_features]
  at::Tensor bias;    // [out_features] or undefined
  ActQuant act;       // simulated input quantization (none by default)
  at::Tensor operator()(const at::Tensor& x) const;  // linear(act.apply(x))
};

struct DecoderLayer {
  at::Tensor input_norm;  // [hidden]
  at::Tensor post_norm;   // [hidden]
  Linear q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;

  // The seven Linears with their names inside the layer ("self_attn.q_proj").
  std::vector<std::pair<std::string, Linear*>> linears();
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

 private:
  DecoderLayer read_layer(int64_t layer, bool own) const;
  const DecoderLayer& use(int64_t layer) const;
  at::Tensor attention(const DecoderLayer& L, int64_t li, const at::Tensor& a, int64_t pos0, KVCache* cache,
                       const LinearHook* hook) const;
  at::Tensor mlp(const DecoderLayer& L, int64_t li, const at::Tensor& m, const LinearHook* hook) const;
  at::Tensor block(const DecoderLayer& L, int64_t li, const at::Tensor& h, int64_t pos0, KVCache* cache,
                   const LinearHook* hook) const;

  struct Source;                    // the checkpoint a streamed model reads
  std::shared_ptr<const Source> src_;
  bool stream_ = false;
  std::vector<at::Device> devices_;
  ModelConfig config_;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
  at::Tensor embed_tokens_;  // [vocab, hidden]
  at::Tensor final_norm_;
  at::Tensor lm_head_;       // [vocab, hidden]; embed_tokens_ when tied
  std::vector<DecoderLayer> layers_;
  at::Tensor inv_freq_;
  KvQuant kv_quant_;
};

// The RoPE inverse frequencies HF computes for `c` (float32).
at::Tensor rope_inverse_frequencies(const ModelConfig& c);

}  // namespace qjobs::model
