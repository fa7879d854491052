// HQQ's parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "common/param_table.hpp"

namespace qjobs::quant {

struct HqqParams {
  int64_t w_bit = 4;                       // W_BIT: weight bits, 2..8
  int64_t group_size = 64;                 // Q_GROUP_SIZE: input columns per group (HQQ's default), -1 = per channel
  std::optional<std::string> zero_points;  // ZERO_POINTS: real or integer; absent: integer for a packed export
  nlohmann::json layer_overrides = nlohmann::json::array();  // LAYER_OVERRIDES as written
};

const ParamTable<HqqParams>& hqq_params();
AlgorithmInfo hqq_info();

}  // namespace qjobs::quant
