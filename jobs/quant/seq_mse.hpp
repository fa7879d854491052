// Sequential MSE (AIMET's seq_mse): each decoder Linear, in the order the
// block computes them, gets the weight range that minimizes the error of its
// outputs on calibration inputs that already carry the weight quantization
// of every Linear before it.
//
// For a Linear W [out, in] with inputs X [tokens, in], per output channel and
// group (the whole row when per channel), candidate c of C scales the
// group's range by (c + 1) / C (symmetric: max|w|; asymmetric: min and max
// both), quantizes the group with it and scores the group's share of the
// output, X[:, g] W[:, g]^T against X[:, g] W'[:, g]^T: the summed squared
// error (mse), absolute error (l1), or AIMET's negative SQNR summed over
// calibration windows (sqnr). The argmin per (channel, group) is kept.
// Candidate C is the full range: round-to-nearest's own grid, so the chosen
// one is never worse than RTN on the calibration data.
//
// INP_SYMMETRY: symqt (AIMET's default) feeds both outputs the inputs of the
// quantized model; symfp the inputs of the full-precision one. AIMET's
// asym (reference on float inputs, candidate on quantized ones) is not built.
// A_BIT 8 or 16 records a static symmetric per-tensor input quantizer per
// Linear (max|x| of its calibration inputs), simulated when the job is
// evaluated; the search itself runs without activation quantization, as
// AIMET's does.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

enum class SeqMseLoss { mse, l1, sqnr };

struct SeqMseOptions {
  int64_t candidates = 20;
  SeqMseLoss loss = SeqMseLoss::mse;
  int64_t windows = 1;  // x's rows are this many equal windows (sqnr sums per window)
};

struct SeqMseResult {
  QuantizedWeight q;     // codes, scales, zeros as quantize_weight() reports them
  at::Tensor weight;     // float32 [out, in]: q dequantized
  at::Tensor candidate;  // int64 [out, groups]: the chosen c, 0 .. C-1 (C-1 = the full range)
};

// The range fraction grid: (c + 1) / C for c = 0 .. C-1.
// REQUIRES: w [out, in], x [tokens, in] float32 on one device; cfg.range is
// min_max (the quantizer's RTN convention); candidates >= 1.
SeqMseResult seq_mse_quantize(const at::Tensor& w, const at::Tensor& x, const WeightQuantConfig& cfg,
                              const SeqMseOptions& options);

// w [out, g] quantized with its range scaled per row by `fraction` [out, 1]:
// codes (signed when symmetric), scale [out, 1], zero [out, 1] (asymmetric).
QuantizedWeight quantize_with_range_fraction(const at::Tensor& w, const at::Tensor& fraction, int bits,
                                             bool zero_point);

class SequentialMseAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
