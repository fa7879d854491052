// SmoothQuant's parameters (W8A8 with activation smoothing).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "common/param_table.hpp"

namespace qjobs::quant {

struct SmoothQuantParams {
  double alpha = 0.5;                    // alpha: migration strength, 0..1
  std::string act = "dynamic";           // ACT: dynamic (per token) or static (per tensor, calibrated) scales
  int64_t a_bit = 8;                     // A_BIT: input activation bits (8; 16 for 16-bit activations)
  bool smoothing = true;                 // SMOOTHING: migrate outliers into the weights (false: plain W8A8)
  std::string weight_scale = "channel";  // WEIGHT_SCALE: channel or tensor
  nlohmann::json layer_overrides = nlohmann::json::array();  // LAYER_OVERRIDES as written
};

const ParamTable<SmoothQuantParams>& smoothquant_params();
AlgorithmInfo smoothquant_info();

}  // namespace qjobs::quant
