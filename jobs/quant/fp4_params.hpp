// NVFP4's and MXFP4's parameters (one struct; the block differs).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "common/param_table.hpp"

namespace qjobs::quant {

struct Fp4Params {
  std::string act = "none";  // ACT: none (W4A16) or dynamic (W4A4, FP4 blocks at run time)
  nlohmann::json layer_overrides = nlohmann::json::array();  // LAYER_OVERRIDES (SKIP only) as written
};

// `block`: "16" (NVFP4) or "32" (MXFP4), for the descriptions.
const ParamTable<Fp4Params>& fp4_params(const char* block);
AlgorithmInfo nvfp4_info();
AlgorithmInfo mxfp4_info();

}  // namespace qjobs::quant
