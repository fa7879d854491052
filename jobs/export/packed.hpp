// Packed integer checkpoints as vLLM and transformers read them, and the way
// back to float weights.
//
//   awq  (AutoAWQ GEMM, quant_method "awq", version "gemm")
//        {p}.qweight int32 [in, out/8]   8 output channels per word, nibble k
//                                        (bits 4k..4k+3) holds channel 8j + AWQ_ORDER[k],
//                                        AWQ_ORDER = 0,2,4,6,1,3,5,7
//        {p}.qzeros  int32 [in/g, out/8] zero points, packed the same way
//        {p}.scales  fp16  [in/g, out]
//        w = (q - z) * s. 4 bits, asymmetric, groups only, no act-order.
//   gptq (AutoGPTQ, quant_method "gptq", checkpoint_format "gptq")
//        {p}.qweight int32 [in*b/32, out] input rows packed b bits at a time,
//                                        row 32/b*i + k at bits b*k..b*k+b-1
//        {p}.qzeros  int32 [groups, out*b/32] (zero - 1), output channels packed
//                                        the same way along the row
//        {p}.scales  fp16  [groups, out]
//        {p}.g_idx   int32 [in]          the group of every input column (act-order)
//        w = s[g_idx] * (q - (stored zero + 1)). 4 or 8 bits.
//   compressed-tensors (quant_method "compressed-tensors", format
//        "pack-quantized"), values signed: q_s = q - 2^(b-1), z_s = z - 2^(b-1)
//        {p}.weight_packed     int32 [out, in*b/32] q_s + 2^(b-1) packed along the
//                                        input, value k of word j = column (32/b)*j + k
//                                        at bits b*k..b*k+b-1
//        {p}.weight_scale      model dtype [out, groups] (groups = 1: per channel)
//        {p}.weight_shape      int64 [2] = {out, in}
//        {p}.weight_zero_point int32 [out*b/32, groups] asymmetric only: z_s + 2^(b-1)
//                                        packed along the output dimension
//        {p}.weight_g_idx      int32 [in] only with act-order
//        w = (q_s - z_s) * s. 4 or 8 bits; symmetric when every zero is 2^(b-1).
//   compressed-tensors W8A8, format "float-quantized" (FP8 E4M3) or
//        "int-quantized" (int8, symmetric):
//        {p}.weight        F8_E4M3 or I8 [out, in]
//        {p}.weight_scale  model dtype [out, 1] (strategy channel) or [1] (tensor)
//        {p}.input_scale   model dtype [1], static activation scales only
//        model.layers.i.self_attn.k_scale / v_scale  model dtype [] with an FP8 KV
//        cache ("kv_cache_scheme"); w = value(code) * weight_scale.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace qjobs::model {
class Checkpoint;
}

namespace qjobs::exporter {

// One quantized Linear in integer form (unsigned codes).
struct IntWeight {
  at::Tensor codes;    // [out, in], 0 .. 2^bits - 1: uint8 (bits <= 8) or int32
  at::Tensor scales;   // float32 [out, groups]
  at::Tensor zeros;    // int32 [out, groups]
  at::Tensor g_idx;    // int32 [in]
  int bits = 4;
  int64_t group_size = 128;

  at::Tensor dequantize() const;  // float32 [out, in]
  IntWeight cpu() const;           // the same on the CPU (packing runs there)
};

enum class PackedFormat { awq, gptq, compressed_tensors };

// One W8A8 Linear: its 8-bit weight and scales.
struct W8A8Weight {
  at::Tensor codes;        // uint8 [out, in] E4M3 codes (float) or int8 [out, in] values (int)
  at::Tensor scale;        // float32 [out, 1] or [1]
  at::Tensor input_scale;  // float32 [1]; undefined for dynamic activations
};

// The EXPORT_FORMAT name of each packed format ("awq", "gptq", "compressed-tensors").
std::optional<PackedFormat> packed_format(const std::string& name);

// The tensors of `w` in `format`, named relative to the Linear ("qweight",
// ...). `scale_dtype` is used where the format stores scales in the model's
// dtype (compressed-tensors); awq and gptq always store float16. Throws
// Error(invalid_input) naming what the format cannot hold.
std::map<std::string, at::Tensor> pack(const IntWeight& w, PackedFormat format,
                                       at::ScalarType scale_dtype = at::kHalf);

// The `quantization_config` of a checkpoint whose Linears `weights` (one per
// quantized Linear) are packed in `format`; `params` are the algorithm's
// spec parameters (DESC_ACT, ...) for the fields that record them.
nlohmann::json packed_quantization_config(const std::map<std::string, IntWeight>& weights, PackedFormat format,
                                          const nlohmann::json& params);

// The compressed-tensors W8A8 config (float-quantized when `is_float`,
// int-quantized otherwise): weights per channel or tensor, activations per
// token (dynamic) or tensor (static), and an FP8 KV cache scheme when
// `kv_cache`. `ignore`: Linears left in full precision.
nlohmann::json w8a8_config(bool is_float, const std::string& weight_strategy, bool act_dynamic, bool kv_cache,
                           const std::vector<std::string>& ignore);
bool is_w8a8(const nlohmann::json& qc);
// The float32 weight [out, in] of W8A8 Linear `prefix`.
at::Tensor w8a8_dequantize(const model::Checkpoint& ckpt, const std::string& prefix);

// The name under which Linear `prefix` holds its packed weight in a checkpoint
// of `qc` ("qweight" or "weight_packed"), or nullopt if qc is not packed.
std::optional<std::string> packed_weight_suffix(const nlohmann::json& qc);

// The float32 weight [out, in] of Linear `prefix` ("model.layers.0.mlp.up_proj")
// from a packed checkpoint whose config has `quantization_config` qc.
at::Tensor unpack_weight(const model::Checkpoint& ckpt, const std::string& prefix, const nlohmann::json& qc);

}  // namespace qjobs::exporter
