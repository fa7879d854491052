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
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace qjobs::model {
class Checkpoint;
}

namespace qjobs::exporter {

// One quantized Linear in integer form (unsigned codes).
struct IntWeight {
  at::Tensor codes;    // int32 [out, in], 0 .. 2^bits - 1
  at::Tensor scales;   // float32 [out, groups]
  at::Tensor zeros;    // int32 [out, groups]
  at::Tensor g_idx;    // int32 [in]
  int bits = 4;
  int64_t group_size = 128;

  at::Tensor dequantize() const;  // float32 [out, in]
};

enum class PackedFormat { awq, gptq };

// The tensors of `w` in `format`, named relative to the Linear ("qweight",
// ...). Throws Error(invalid_input) naming what the format cannot hold.
std::map<std::string, at::Tensor> pack(const IntWeight& w, PackedFormat format);

// The float32 weight [out, in] of Linear `prefix` ("model.layers.0.mlp.up_proj")
// from a packed checkpoint whose config has `quantization_config` qc.
at::Tensor unpack_weight(const model::Checkpoint& ckpt, const std::string& prefix, const nlohmann::json& qc);

}  // namespace qjobs::exporter
