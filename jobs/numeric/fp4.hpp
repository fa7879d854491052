// The 4-bit float formats of NVFP4 and MXFP4, written from their definitions
// (OCP Microscaling Formats v1.0; NVIDIA's NVFP4):
//
//   E2M1 element: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa.
//     codes 0..7 are 0, 0.5 (subnormal), 1, 1.5, 2, 3, 4, 6; code | 8 is the
//     negative. No infinities, no NaN. Rounding is to nearest with ties to
//     the even code (0.25 -> 0, 0.75 -> 1, 2.5 -> 2, 5 -> 4), saturating at
//     +-6; NaN becomes 0, and a value that rounds to 0 is code 0 (never -0).
//   E8M0 scale (MXFP4): an unsigned exponent e, value 2^(e - 127); 255 is NaN.
//
//   NVFP4: blocks of 16 along the input; per tensor a float32 global scale
//     G = 448 * 6 / amax(W); per block an E4M3 scale code of
//     s = amax(block) / 6 * G; element = e2m1(w * G / s); w' = e2m1 * s / G.
//     (compressed-tensors stores G as weight_global_scale; ModelOpt's
//     weight_scale_2 is 1 / G.)
//   MXFP4: blocks of 32; scale 2^(P - 2), where 2 is the largest E2M1
//     exponent and P = floor(log2 amax(block)), plus one when amax / 2^P >=
//     1.75 (compressed-tensors' round_to_power_2, which llm-compressor's MXFP4
//     checkpoints use; the OCP spec takes the floor alone and saturates more),
//     clamped to [2^-127, 2^127]; element = e2m1(w / scale) (saturating at 6);
//     w' = e2m1 * scale.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

namespace qjobs::numeric {

constexpr double kE2m1Max = 6.0;

at::Tensor e2m1_round(const at::Tensor& x);       // float32, the nearest E2M1 values
at::Tensor e2m1_encode(const at::Tensor& x);      // uint8 codes 0..15, rounded as e2m1_round
at::Tensor e2m1_decode(const at::Tensor& codes);  // float32 values of uint8 codes
at::Tensor e8m0_decode(const at::Tensor& codes);  // float32 2^(e - 127); NaN for 255

enum class Fp4Kind { nvfp4, mxfp4 };
int64_t fp4_block(Fp4Kind kind);  // 16 or 32

// One weight (or activation) in NVFP4 / MXFP4 blocks along its last dim.
struct Fp4Blocks {
  at::Tensor codes;         // uint8 [..., n]: E2M1 codes
  at::Tensor scale;         // uint8 [..., n / block]: E4M3 codes (nvfp4) or E8M0 exponents (mxfp4)
  double global_scale = 1;  // nvfp4's G; 1 for mxfp4
};

// The block scales of blocks whose largest magnitudes are `amax` (any
// shape): their codes (uint8: E4M3 for nvfp4 under global scale G, E8M0 for
// mxfp4) and what each element is divided by (float32: code value / G, or
// the power of two).
struct Fp4Scales {
  at::Tensor codes;
  at::Tensor divisor;
};
Fp4Scales fp4_scales(const at::Tensor& amax, Fp4Kind kind, double global_scale);

// REQUIRES: the last dim of x is a multiple of the block. `global_scale` <= 0
// derives G from x itself (448 * 6 / amax); activations pass a calibrated one.
Fp4Blocks fp4_quantize(const at::Tensor& x, Fp4Kind kind, double global_scale = 0);
at::Tensor fp4_dequantize(const Fp4Blocks& b, Fp4Kind kind);  // float32, x's shape
// x quantized and dequantized in one step (simulated activations).
at::Tensor fp4_fake_quant(const at::Tensor& x, Fp4Kind kind, double global_scale = 0);
// 448 * 6 / amax: the NVFP4 global scale of values whose largest magnitude is amax.
double nvfp4_global_scale(double amax);

}  // namespace qjobs::numeric
