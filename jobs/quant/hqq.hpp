// HQQ (Badri & Shaji, 2023): calibration-free. Per group, scale from the
// group's range, then the zero point refined by the half-quadratic solver:
// W_e = shrink_lp(W - W_r) with p = 0.7 and beta = 10 (x1.01 per step), zero =
// mean(W_q - (W - W_e) * scale), 20 iterations, stopping as soon as the mean
// absolute error stops falling. Zeros stay real-valued (HQQ's own format) for
// a fake-quant export; for a packed one, rounding them to integers is the last
// step (the codes are taken again against the rounded zeros), and the report's
// quantization config records the mean weight error both ways. Keys: W_BIT,
// Q_GROUP_SIZE, LAYER_OVERRIDES. A width the group size does not divide is
// quantized per output channel.
#pragma once

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

struct HqqResult {
  at::Tensor weight;            // float32 [out, in]: what is exported
  at::Tensor real_zero_weight;  // the same with HQQ's real-valued zeros
  numeric::IntWeight ints;      // integer form (integer_zeros only)
};
HqqResult hqq_quantize(const at::Tensor& w, int bits, int64_t group_size, bool integer_zeros = false, int iters = 20,
                       double p = 0.7, double beta = 10.0, double kappa = 1.01);

class HqqAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
