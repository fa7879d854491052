// RTN: round-to-nearest weight quantization of every decoder Linear, no
// calibration. Keys (AutoAWQ's names): W_BIT, Q_GROUP_SIZE (-1 per channel),
// ZERO_POINT, LAYER_OVERRIDES. Output: fake-quantized weights in the original dtype.
#pragma once

#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class RtnAlgorithm final : public QuantAlgorithm {
 public:
  QuantOutput run(const QuantInputs& in) override;
};

}  // namespace qjobs::quant
