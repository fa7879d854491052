// SmoothQuant (Xiao et al., 2023) W8A8: per block, the per-channel max |x|
// of the inputs of q/k/v (after the input norm) and of gate/up (after the
// post-attention norm) over the calibration tokens; s = max|x|^alpha /
// max|W|^(1-alpha) (max |W| over the rows of the Linears that share the
// input), folded into the norm (divided) and the Linears' columns
// (multiplied), which leaves the block's function unchanged; then every
// decoder Linear gets int8 per-output-channel symmetric weights and int8
// symmetric activations, per token (ACT: dynamic) or per tensor with a scale
// calibrated on the smoothed inputs (ACT: static). The next block's inputs
// come from the smoothed full-precision block. No resume state is kept (a
// restarted job recalibrates). Keys: alpha, ACT, A_BIT (8; 16 for 16-bit
// activations), LAYER_OVERRIDES (SKIP, A_BIT: mixed activation precision),
// SMOOTHING (false: no smoothing at all) and WEIGHT_SCALE (channel, or tensor:
// one scale per Linear), which together give AMD Quark's int8 W8A8 recipe
// (per-tensor weights, no smoothing).
#pragma once

#include <vector>

#include "jobs/model/llama_model.hpp"
#include <optional>

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/smoothquant_params.hpp"

namespace qjobs::quant {

// Folds s = act_max^alpha / w_max^(1-alpha) (clamped to >= 1e-5), w_max
// over `linears`, into `norm_weight` (its effective scale (offset + w) / s)
// and the Linears and `followers` (full-precision readers such as a
// router; * s on input columns). act_max: float32 [in]. Returns s.
at::Tensor smooth_linears(at::Tensor& norm_weight, const std::vector<model::Linear*>& linears,
                          const at::Tensor& act_max, double alpha, const std::vector<model::Linear*>& followers = {},
                          double norm_offset = 0.0);

class SmoothQuantAlgorithm final : public QuantAlgorithm {
 public:
  // `given`: typed parameters that replace the section's (LMQuant's presets
  // hand their own); none: the section in QuantInputs::params.
  explicit SmoothQuantAlgorithm(std::optional<SmoothQuantParams> given = std::nullopt) : given_(std::move(given)) {}
  QuantOutput run(const QuantInputs& in) override;

 private:
  std::optional<SmoothQuantParams> given_;
};

}  // namespace qjobs::quant
