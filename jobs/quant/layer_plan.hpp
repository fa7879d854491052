// Which quantizer each Linear gets: the section's W_BIT / Q_GROUP_SIZE /
// ZERO_POINT, overridden by the first LAYER_OVERRIDES entry whose glob
// `pattern` matches the Linear's name ("model.layers.0.mlp.down_proj").
// An override may set W_BIT, Q_GROUP_SIZE, ZERO_POINT or SKIP (keep the
// original weights), and, for the algorithms that quantize activations,
// A_BIT (the Linear's input bits; 16 keeps Qualcomm-style 16-bit
// activations, 0 full precision), so the mobile recipes (w4 with some layers w8, first
// and last layers kept) are one YAML list away.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/quant/quantizer.hpp"

namespace qjobs::quant {

struct LinearPlan {
  bool skip = false;
  WeightQuantConfig cfg;
  int a_bits = 8;  // the section's A_BIT (8 when absent), or the override's
};

LinearPlan plan_for(const std::string& linear, const nlohmann::json& params, RangeMode range);

// The decoder Linears of checkpoint shapes `in_features` (by name without
// ".weight") whose planned group size does not divide their width.
std::vector<std::string> ragged_linears(const std::map<std::string, int64_t>& in_features, const nlohmann::json& params);


}  // namespace qjobs::quant
