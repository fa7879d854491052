// Packed checkpoints as vLLM and transformers read them: the writer. The way
// back to float weights is jobs/model/quantized_checkpoint.hpp.
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
//        {p}.weight_g_idx      int32 [in] read only (actorder "group", written
//                                        by older tools); qjobs writes act-order
//                                        as actorder "weight": groups in column order
//        w = (q_s - z_s) * s. 4 or 8 bits; symmetric when every zero is 2^(b-1).
//   compressed-tensors W8A8, format "float-quantized" (FP8 E4M3) or
//        "int-quantized" (int8, symmetric):
//        {p}.weight        F8_E4M3 or I8 [out, in]
//        {p}.weight_scale  model dtype [out, 1] (strategy channel) or [1] (tensor)
//        {p}.input_scale   model dtype [1], static activation scales only
//        model.layers.i.self_attn.k_scale / v_scale  model dtype [1] with an FP8 KV
//        cache ("kv_cache_scheme"); w = value(code) * weight_scale.
//   compressed-tensors NVFP4 / MXFP4 (formats "nvfp4-pack-quantized",
//        "mxfp4-pack-quantized"; codecs in jobs/numeric/fp4.hpp):
//        {p}.weight_packed        U8 [out, in/2] two E2M1 codes per byte, column 2j
//                                        in the low nibble, 2j+1 in the high one
//        {p}.weight_scale         F8_E4M3 [out, in/16] (NVFP4) or U8 E8M0 [out, in/32] (MXFP4)
//        {p}.weight_global_scale  F32 [1]  NVFP4 only: G = 448 * 6 / amax(W)
//        {p}.input_global_scale   F32 [1]  NVFP4 W4A4 only: G of the calibrated inputs
//        w = e2m1 * weight_scale / G (NVFP4), e2m1 * 2^(e - 127) (MXFP4).
//
// A compressed-tensors checkpoint may mix these: every quantized Linear is in
// one of `config_groups` (its scheme: weights, input activations, format).
// Written: one group targeting "Linear" when every quantized Linear has the
// same scheme, else one group per scheme listing its Linears by exact name
// and the top-level format "mixed-precision"; every other Linear of the
// model (lm_head, routers, skipped ones) by name in `ignore`, so each Linear
// is in exactly one group or in `ignore`. Read: a Linear takes the group
// that names it exactly, else one whose "re:" pattern matches it from the
// start, else one targeting "Linear"; `ignore` (same matching) wins.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/numeric/quantized_weight.hpp"

namespace qjobs::model {
struct ActQuant;
}

namespace qjobs::exporter {

using numeric::Fp4Weight;
using numeric::IntWeight;
using numeric::W8A8Weight;

enum class PackedFormat { awq, gptq, compressed_tensors };

// The EXPORT_FORMAT name of each packed format ("awq", "gptq", "compressed-tensors").
std::optional<PackedFormat> packed_format(const std::string& name);

// The tensors of `w` in `format`, named relative to the Linear ("qweight",
// ...). `scale_dtype` is used where the format stores scales in the model's
// dtype (compressed-tensors); awq and gptq always store float16. Throws
// Error(invalid_input) naming what the format cannot hold.
std::map<std::string, at::Tensor> pack(const IntWeight& w, PackedFormat format, at::ScalarType scale_dtype = at::kHalf);

// The tensors of an NVFP4 / MXFP4 Linear, named relative to it.
std::map<std::string, at::Tensor> pack(const Fp4Weight& w);

// The `quantization_config` of an awq or gptq checkpoint whose Linears
// `weights` (one per quantized Linear) are packed in `format`; `recipe` is
// the algorithm's record (QuantOutput::quantization_config: GPTQ's desc_act,
// static_groups, damp_percent), `symmetric` the Linears' plan.
nlohmann::json packed_quantization_config(const std::map<std::string, IntWeight>& weights, PackedFormat format,
                                          const nlohmann::json& recipe, bool symmetric);

// The compressed-tensors scheme of one Linear.
struct LinearScheme {
  nlohmann::json weights;
  nlohmann::json input_activations;  // null: weight-only
  std::string format;                // pack-quantized, int-quantized, float-quantized, nvfp4-/mxfp4-pack-quantized
};
// `act_order`: calibrated in act-order with static groups (actorder
// "weight"). Throws Error(invalid_input) for a per-column group map (g_idx),
// which compressed-tensors >= 0.13 and current vLLM no longer read.
LinearScheme int_scheme(const IntWeight& w, bool act_order);
LinearScheme w8a8_scheme(bool is_float, const std::string& weight_strategy);
LinearScheme fp4_scheme(const Fp4Weight& w);
// The input_activations arguments of a simulated activation quantizer
// (null for none). Throws Error(invalid_input) for one no scheme holds.
nlohmann::json activation_args(const model::ActQuant& a);

// The compressed-tensors config of Linears `schemes` (by name); `ignore`:
// names kept in full precision besides lm_head; `kv_cache_scheme`: null or
// the KV cache's arguments.
nlohmann::json compressed_tensors_config(const std::map<std::string, LinearScheme>& schemes,
                                         const std::vector<std::string>& ignore, const nlohmann::json& kv_cache_scheme);
// The kv_cache_scheme arguments: FP8 E4M3 per tensor (static k_scale /
// v_scale). An integer KV cache (QoQ's KV4: asymmetric per token and head,
// dynamic) has no form compressed-tensors' schema accepts (dynamic needs a
// token, tensor or group strategy) and no engine serves; the worker records
// it under config.json's qjobs_quantization instead.
nlohmann::json fp8_kv_cache_args();

}  // namespace qjobs::exporter
