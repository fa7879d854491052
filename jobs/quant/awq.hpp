// AWQ (Lin et al., 2024), as AutoAWQ runs it: per block, the inputs of every
// Linear from the full-precision block; for each scaling group (input norm ->
// q,k,v judged on the attention output; v -> o when their shapes match;
// post-attention norm -> gate,up judged on the MLP output; up -> down) the
// scale s = mean|x|^a / mean|w|^(1-a) (duo scaling, normalised by
// sqrt(max s * min s)) with a on a 20-point grid minimising the output MSE
// of the quantized group; s folded into the previous op; then the clip
// search (max |w| shrunk by up to 50% in 20 steps per group, skipped for q
// and k), and round-to-nearest with the range not forced through zero. The
// next block's inputs come from the full-precision block. Keys: W_BIT,
// Q_GROUP_SIZE, ZERO_POINT, VERSION, N_GRID, DUO_SCALING, CLIP, LAYER_OVERRIDES.
#pragma once

#include <optional>

#include "jobs/quant/algorithm.hpp"
#include "jobs/quant/awq_params.hpp"

namespace qjobs::quant {

class AwqAlgorithm final : public QuantAlgorithm {
 public:
  // `given`: typed parameters that replace the section's (LMQuant's presets
  // hand their own); none: the section in QuantInputs::params.
  explicit AwqAlgorithm(std::optional<AwqParams> given = std::nullopt) : given_(std::move(given)) {}
  QuantOutput run(const QuantInputs& in) override;

 private:
  std::optional<AwqParams> given_;
};

}  // namespace qjobs::quant
