// The integer weight quantizer every algorithm builds on.
//
// Weights are PyTorch Linear layout [out_features, in_features]; groups run
// along in_features, `group_size` columns each, the last group of a row
// shorter when in_features % group_size != 0. Arithmetic is float32 with
// round-half-to-even, which is what torch.round does.
//
// Conventions (the AutoAWQ / reference convention):
//   asymmetric: scale = max(max - min, 1e-5) / (2^b - 1)   (range not forced through 0)
//               zero  = clamp(round(-min / scale), 0, 2^b - 1)
//               q     = clamp(round(w / scale) + zero, 0, 2^b - 1);  w' = (q - zero) * scale
//   symmetric:  scale = max(max|w|, 1e-5) / (2^(b-1) - 1)
//               q     = clamp(round(w / scale), -2^(b-1), 2^(b-1) - 1);  w' = q * scale
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

#include "jobs/numeric/quantized_weight.hpp"

namespace qjobs::quant {

// How the range of a group is chosen:
//   min_max       [min, max] as it is (AWQ, the reference RTN)
//   through_zero  [min(min, 0), max(max, 0)]; symmetric: zero fixed at 2^(b-1) (GPTQ)
enum class RangeMode { min_max, through_zero };

struct WeightQuantConfig {
  int bits = 4;              // 2..8
  int64_t group_size = 128;  // columns per group; -1 = one group per output channel
  bool zero_point = true;    // asymmetric when true
  RangeMode range = RangeMode::min_max;
};

// Scales and zeros of one group for GPTQ's column loop: x [rows, cols] ->
// scale [rows, 1] float32, zero [rows, 1] float32 (integral values), by the
// through_zero convention. Symmetric zeros are 2^(b-1) (unsigned storage).
std::pair<at::Tensor, at::Tensor> through_zero_params(const at::Tensor& x, int bits, bool zero_point);
// clamp(round(w / scale) + zero, 0, 2^b - 1), and its dequantized value.
at::Tensor quantize_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& zero, int bits);
at::Tensor dequantize_codes(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& zero);

struct QuantizedWeight {
  at::Tensor codes;        // int32 [out, in]: 0..2^b-1 (asymmetric) or signed (symmetric)
  at::Tensor scales;       // float32 [out, n_groups]
  at::Tensor zeros;        // int32 [out, n_groups]; undefined when symmetric
  int64_t group_size = 0;  // the effective group size (in_features for per-channel)

  // float32 [out, in]: the values the codes stand for.
  at::Tensor dequantize() const;
};

// quantize_weight(w, cfg).dequantize() in w's dtype, by the same float32
// operations (so bit-identical), broadcast over the groups and done in place
// on one float32 copy: no integer codes, no scale and zero matrices gathered
// to full size. AWQ's scale and clip searches run it at every grid point.
at::Tensor fake_quantize(const at::Tensor& w, const WeightQuantConfig& cfg);
// The same on a contiguous float32 w, in place; returns w.
at::Tensor& fake_quantize_(at::Tensor& w, const WeightQuantConfig& cfg);

// Unsigned codes with integer zeros (symmetric codes are shifted by
// 2^(b-1)) and the column-to-group map, for the packed formats.
numeric::IntWeight to_int_weight(const QuantizedWeight& q, int bits);

// REQUIRES: w is 2-D, bits in [2, 8], group_size == -1 or >= 1.
QuantizedWeight quantize_weight(const at::Tensor& w, const WeightQuantConfig& cfg);

// AIMET's low-power blockwise quantization (LPBQ) of symmetric group
// scales [out, groups]: each row's scales become integer multiples k of one
// per-channel scale c = max(row) / 2^(decompressed_bits - bits), k =
// clamp(round(s / c), 1, 2^(decompressed_bits - bits)), so the device keeps
// 8-bit block scales under a float one per channel. Returns the scales k * c.
at::Tensor lpbq_scales(const at::Tensor& scales, int bits, int decompressed_bits = 8);

// w requantized symmetrically on the given group scales [out, groups]
// (group_size columns each): signed codes, as quantize_weight reports them.
QuantizedWeight quantize_with_scales(const at::Tensor& w, const at::Tensor& scales, int64_t group_size, int bits);

}  // namespace qjobs::quant
