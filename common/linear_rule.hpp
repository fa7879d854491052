// Which settings each Linear gets from an algorithm section: W_BIT /
// Q_GROUP_SIZE / ZERO_POINT / A_BIT, overridden by the first LAYER_OVERRIDES
// entry whose glob `pattern` matches the Linear's name, and the per-channel
// fallback the worker applies for a compressed-tensors export
// (PER_CHANNEL_LINEARS). Pure JSON: the server checks exports with it at
// submission, jobs/quant/layer_plan.hpp builds the quantizer from it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

struct LinearRule {
  bool skip = false;
  int bits = 4;
  int64_t group_size = 128;  // -1: per output channel
  bool zero_point = true;
  int a_bits = 8;
};

LinearRule linear_rule(const std::string& linear, const nlohmann::json& params);

// What an export of the decoder Linears of `config` (a Llama-family
// config.json) cannot hold, or changes, for ALGORITHM `algorithm` with
// section `params`: one finding per kind of Linear ("mlp.down_proj"),
// naming the widths. error: the export would fail or could not be read;
// otherwise a warning (ragged widths packed per output channel).
struct ExportFinding {
  bool error = false;
  std::string message;
};
std::vector<ExportFinding> check_export_shapes(const std::string& algorithm, const std::string& export_format,
                                               const nlohmann::json& params, const nlohmann::json& config);

}  // namespace qjobs
