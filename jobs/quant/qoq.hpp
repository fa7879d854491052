// QoQ W4A8KV4 (Lin et al., 2024, "QServe"), the algorithm behind Nyuntam's
// LMQuant section. Per model, then per block:
//   1. rotation: RMSNorm weights fused into the Linears that read them, the
//      residual stream rotated by a Hadamard matrix (random orthogonal when
//      the width is not a power of two), values rotated per head across
//      v_proj/o_proj (transforms.hpp);
//   2. SmoothAttention: keys after RoPE divided by lambda = max|k|^alpha /
//      max|q|^beta (alpha 0.5, beta 0 by default), queries multiplied, for the
//      4-bit KV cache; equal on each RoPE pair;
//   3. smoothing of the block's inner activations: v -> o_proj and
//      up -> down_proj, s = max|x|^alpha / max|w|^beta, alpha chosen on a grid
//      by the quantized output error (GridSearch) or given (Manual);
//   4. reordering of the MLP's intermediate channels by max|x| so that
//      groups of down_proj's inputs hold channels of like magnitude;
//   5. weights: progressive group quantization (g128) — int8 per output
//      channel into the protective range [-119, 119], then uint4 per group of
//      128 with an integer scale and zero (the dequantized int8 value
//      (q - z) * s2 must stay in [-128, 127]) — or uint4 per channel (gchn);
//      activation-aware clipping (per group, the shrink of [min, max] with
//      the least output error on calibration inputs); GPTQ on that grid;
//   6. activations int8 per token (dynamic) or per tensor (static), KV cache
//      uint4 (g128) or uint8 (gchn) asymmetric per token per head.
// The full-precision model after steps 1-4 computes the same logits as the
// original. Every step can be turned off, which gives the plain RTN
// W4A8KV4 baseline. The presets sq_dynamic, sq_static, awq and gptq hand the
// job to SmoothQuant, AWQ and GPTQ (W4 g128).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/gptq.hpp"
#include "jobs/quant/lmquant_params.hpp"

namespace qjobs::quant {

// The weight grid of one Linear: asymmetric uint-b per group, with a float
// scale, or (progressive) with scale s1 * s2: s1 = max|row| / 119 the
// per-channel int8 scale, s2 >= 1 an integer, zero an integer, and codes
// limited so that the int8 value (q - z) * s2 stays in [-128, 127].
// Rounding is one step to the nearest grid point of the composite scale.
struct WeightGrid {
  int bits = 4;
  bool progressive = false;
  at::Tensor s1;  // float32 [rows, 1] when progressive

  static WeightGrid for_weight(const at::Tensor& w, int bits, bool progressive);
  // The grid of a group's columns [rows, n], its [min, max] shrunk by ratio [rows, 1] (undefined = 1).
  GroupGrid grid(const at::Tensor& cols, const at::Tensor& ratio) const;
  at::Tensor codes(const at::Tensor& cols, const GroupGrid& g) const;  // float codes
};

class QoqAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

// Nyuntam's LMQuant: QoQ for g128/gchn, the other presets by delegation.
class LmQuantAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
