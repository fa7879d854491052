// The per-Linear weight settings an algorithm's section asks for, typed
// (no libtorch): each algorithm's catalog row derives one from its typed
// parameters (AlgorithmInfo::weights), and spec/linear_plan.hpp applies it
// to a model's Linears. linear_overrides() is defined in
// weight_only_params.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::quant {

// One LAYER_OVERRIDES entry, typed: the first entry whose glob `pattern`
// matches a Linear's name ("model.layers.0.mlp.down_proj") sets what it
// gives; what it leaves out keeps the section's value.
struct LinearOverride {
  std::string pattern;
  bool skip = false;                  // SKIP: keep the Linear's original weights
  std::optional<int> bits;            // W_BIT
  std::optional<int64_t> group_size;  // Q_GROUP_SIZE
  std::optional<bool> zero_point;     // ZERO_POINT
  std::optional<int> a_bits;          // A_BIT
};

// What an algorithm's section asks of every decoder Linear before the
// checkpoint's shapes are known: the section's weight settings (or the
// algorithm's own, for sections that have none) and its overrides. Each
// algorithm's catalog row derives it from its typed parameters
// (AlgorithmInfo::weights); spec/linear_plan.hpp turns it into the
// per-Linear plan.
struct WeightScheme {
  int bits = 4;
  int64_t group_size = 128;  // -1: one group per output channel
  bool zero_point = true;
  int a_bits = 8;  // input bits, for the algorithms that quantize activations
  std::vector<LinearOverride> overrides;
};

// LAYER_OVERRIDES as the schema validated it, typed (entries that are not
// mappings are left out, as the old reader did).
std::vector<LinearOverride> linear_overrides(const nlohmann::json& list);

}  // namespace qjobs::quant
