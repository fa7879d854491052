// GPTQ's parameters: the weight-only keys and AutoGPTQ's options.
#pragma once

#include <cstdint>
#include <string>

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

struct GptqParams : WeightOnlyParams {
  double damp_percent = 0.01;    // DAMP_PERCENT: damping as a share of the mean Hessian diagonal, 0..1
  int64_t block_size = 128;      // BLOCK_SIZE: columns per lazy update block
  bool desc_act = false;         // DESC_ACT: act-order, columns by decreasing Hessian diagonal
  bool static_groups = false;    // STATIC_GROUPS: group parameters from the weight before updates
  bool true_sequential = true;   // TRUE_SEQUENTIAL: q,k,v -> o -> gate,up -> down inside a block
  std::string w_format = "int";  // W_FORMAT: int, nvfp4 or mxfp4
};

const ParamTable<GptqParams>& gptq_params();
AlgorithmInfo gptq_info();

}  // namespace qjobs::quant
