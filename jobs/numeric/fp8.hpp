// FP8 E4M3 ("e4m3fn", the format of compressed-tensors float-quantized
// checkpoints and vLLM's FP8 kernels), written from the format's definition
// because libtorch 1.13 has no float8 type:
//   1 sign bit, 4 exponent bits with bias 7, 3 mantissa bits;
//   exponent field 0 holds subnormals m/8 * 2^-6 (smallest 2^-9);
//   no infinities; S.1111.111 (0x7F, 0xFF) is NaN, so the largest finite
//   value is S.1111.110 = 1.75 * 2^8 = 448.
// Encoding rounds to nearest, ties to even, and saturates: finite values
// beyond +-448 and infinities become +-448 (what compressed-tensors and vLLM
// do by clamping before the cast); NaN stays NaN. -0 keeps its sign (0x80).
#pragma once

#include <cstdint>

#include <ATen/ATen.h>

namespace qjobs::numeric {

constexpr double kFp8E4m3Max = 448.0;

// The nearest E4M3 value of each element, as float32 (same shape).
at::Tensor fp8_e4m3_round(const at::Tensor& x);

// Codes (uint8, same shape) of each element, rounded as fp8_e4m3_round.
at::Tensor fp8_e4m3_encode(const at::Tensor& x);

// Float32 values of uint8 codes.
at::Tensor fp8_e4m3_decode(const at::Tensor& codes);

}  // namespace qjobs::numeric
