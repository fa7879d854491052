// QuaRot (Ashkboos et al., 2024) for weights: the offline rotations that fold
// into the weights, then the weights quantized in the rotated basis.
//
//   1. every RMSNorm weight fused into the Linears that read it (the norms
//      become 1; a tied lm_head is untied);
//   2. the residual stream rotated by an orthogonal Q [hidden, hidden]: the
//      embedding E Q, its readers W Q, its writers (o_proj, down_proj) Q^T W;
//   3. each value head rotated by H [head_dim, head_dim] (v_proj rows, the
//      o_proj columns reading them);
//   4. the decoder Linears quantized by the per-Linear plan: RTN (no
//      calibration) or GPTQ on the rotated model's calibration inputs
//      (true-sequential, next block's inputs from the quantized block).
//
// Q and H are the normalized Hadamard matrix, with random column signs from
// SEED for ROTATION random_hadamard; a width that is not a power of two gets
// a random orthogonal matrix. Rotations spread a channel's outlier over all
// channels, so the groups' ranges are set by typical values, not outliers.
// QuaRot's online Hadamards (before down_proj, across heads) need runtime
// kernels and are not applied: the output is a plain model of its family
// (norms of 1, lm_head untied), which every integer weight format holds and
// every loader runs as it is. The whole model is resident in float32 while
// it is rotated (4 bytes per parameter).
#pragma once

#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class QuarotAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
