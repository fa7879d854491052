// QuaRot's parameters: the weight-only keys, the rotation and the quantizer
// that runs on the rotated weights.
#pragma once

#include <cstdint>
#include <string>

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

struct QuarotParams : WeightOnlyParams {
  std::string rotation = "random_hadamard";  // ROTATION: hadamard or random_hadamard (random column signs)
  int64_t seed = 1;                          // SEED: the signs' (and a non-power-of-two width's matrix's) seed
  std::string quantizer = "RTN";             // QUANTIZER: RTN (no calibration) or GPTQ
  double damp_percent = 0.01;                // DAMP_PERCENT: GPTQ's damping, a share of the mean Hessian diagonal
};

const ParamTable<QuarotParams>& quarot_params();
AlgorithmInfo quarot_info();

}  // namespace qjobs::quant
