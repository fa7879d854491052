// AutoAWQ's parameters: the weight-only keys and the scale search.
#pragma once

#include <cstdint>

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

struct AwqParams : WeightOnlyParams {
  int64_t n_grid = 20;      // N_GRID: grid points of the scale search, 2..1000
  bool duo_scaling = true;  // DUO_SCALING: scale by activation and weight statistics (AutoAWQ's default)
  bool clip = true;         // CLIP: search clipping ranges after scaling
};

const ParamTable<AwqParams>& awq_params();
AlgorithmInfo awq_info();

}  // namespace qjobs::quant
