// RTN: round-to-nearest weight quantization of every decoder Linear, no
// calibration. Keys (AutoAWQ's names): W_BIT, Q_GROUP_SIZE (-1 per channel),
// ZERO_POINT. Output: fake-quantized weights in the original dtype.
#pragma once

#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class RtnAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const model::Checkpoint& ckpt, const nlohmann::json& params,
                  const ProgressFn& progress) override;
};

}  // namespace qjobs::quant
