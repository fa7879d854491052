// A Llama-family checkpoint as an ONNX graph for edge compilers (Qualcomm
// AI Hub's split: a fixed number of new tokens AR against a context of CL
// positions, its KV cache as an input/output pair), written with the ONNX
// protobuf library, weights in an external data file, opset 17.
//
// Batch 1. Inputs:
//   input_ids            int64   [1, AR]
//   position_ids         int64   [1, AR]          positions of the new tokens (< CL)
//   attention_mask       float32 [1, 1, AR, CL]   added to the scores: 0 where a new
//                                                  token sees a position, very negative
//                                                  elsewhere (causal, padding, sliding window)
//   past_key_N_in        float32 [1, KVH, CL-AR, D]  RoPE already applied
//   past_value_N_in      float32 [1, KVH, CL-AR, D]
// Outputs:
//   logits               float32 [1, AR, vocab]
//   past_key_N_out       float32 [1, KVH, AR, D]   the new tokens' keys and values, which
//   past_value_N_out     float32 [1, KVH, AR, D]   the caller writes into its cache
// Scores run over [past (CL-AR) | new (AR)]: the mask's last AR columns are
// the new tokens.
//
// Weights keep their checkpoint names ("model.layers.0.self_attn.q_proj.weight",
// PyTorch layout [out, in], applied by Gemm transB=1). The float graph holds
// the job's (dequantized) weights; an AIMET encodings file beside it
// (aimet_encodings) describes their grid and the Linears' input quantizers,
// for compilers that apply them. The QDQ graph holds the integer codes
// instead (DequantizeLinear per row of each group) and QuantizeLinear /
// DequantizeLinear pairs on the quantized Linears' inputs: the quantization
// simulated in any ONNX runtime. 16-bit activations use the com.microsoft
// QuantizeLinear (int16), which the standard opset gains only in 21.
//
// Tensor names the encodings refer to: the weights' names above, and the
// Linears' inputs: model.layers.N.input_layernorm.output (q, k, v),
// model.layers.N.self_attn.o_proj.input, model.layers.N.post_attention_layernorm.output
// (gate, up), model.layers.N.mlp.down_proj.input.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "jobs/export/packed.hpp"

namespace qjobs::exporter::onnx {

constexpr int64_t kOpset = 17;

struct GraphShape {
  int64_t seq_len = 128;       // AR: new tokens per call
  int64_t context_len = 1024;  // CL: past + new positions
  std::string name() const;    // "ar128_cl1024"
};

// The job's quantization: integer weights by Linear name (without
// ".weight") and the input quantizers as config.json's
// qjobs_quantization.activations records them.
struct Quantization {
  const std::map<std::string, IntWeight>* int_weights = nullptr;
  nlohmann::json activations = nlohmann::json::object();
  // AIMET LPBQ: symmetric grouped weights of fewer than 8 bits whose block
  // scales are integer multiples of a per-channel one (quant::lpbq_scales);
  // their encodings are enc_type LPBQ (bw 8, compressed_bw W_BIT).
  bool lpbq = false;
};

using WeightSource = std::function<at::Tensor(const std::string& name)>;

// Writes `onnx_path` and its external data file `onnx_path` with the
// extension ".data". With `qdq`, the QDQ graph from `q` (every Linear of
// q.int_weights with its codes; inputs quantized where q.activations has a
// static int_tensor entry); else the float graph of `weight`. Throws
// Error(invalid_input) naming what the graph cannot hold (shapes, a
// GPTQ act-order column map, dynamic per-token activations, FP8).
void write_llama_onnx(const nlohmann::json& config, const WeightSource& weight, const GraphShape& shape,
                      const Quantization* qdq, const std::filesystem::path& onnx_path);

// AIMET's encodings (format 1.0.0) of `q` for the float graph: PER_CHANNEL
// or PER_BLOCK integer weights (x = (q + offset) * scale, q unsigned, offset
// = -zero point), PER_TENSOR symmetric inputs.
nlohmann::json aimet_encodings(const nlohmann::json& config, const Quantization& q);

}  // namespace qjobs::exporter::onnx
