// HQQ (Badri & Shaji, 2023): calibration-free. Per group, scale from the
// group's range, then the zero point refined by the half-quadratic solver:
// W_e = shrink_lp(W - W_r) with p = 0.7 and beta = 10 (x1.01 per step), zero =
// mean(W_q - (W - W_e) * scale), 20 iterations, stopping as soon as the mean
// absolute error stops falling. Zeros stay real-valued (HQQ's format); the
// packaged weights are fake-quantized. Keys: W_BIT, Q_GROUP_SIZE, LAYER_OVERRIDES.
#pragma once

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

// The HQQ-dequantized weight, float32 [out, in].
at::Tensor hqq_quantize(const at::Tensor& w, int bits, int64_t group_size, int iters = 20, double p = 0.7,
                        double beta = 10.0, double kappa = 1.01);

class HqqAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
