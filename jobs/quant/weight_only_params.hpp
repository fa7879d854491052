// The keys the weight-only algorithms share (AutoAWQ's section in Nyuntam;
// RTN, GPTQ and SequentialMSE take the same ones, so switching ALGORITHM
// needs no other edit). No libtorch: the server's catalog is built from
// these declarations.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/param_spec.hpp"
#include "common/param_table.hpp"
#include "jobs/quant/weight_scheme.hpp"
#include "spec/algorithm_catalog.hpp"

namespace qjobs::quant {

struct WeightOnlyParams {
  int64_t w_bit = 4;             // W_BIT: weight bits, 2..8
  int64_t group_size = 128;      // Q_GROUP_SIZE: input columns per group, -1 = per output channel
  bool zero_point = true;        // ZERO_POINT: asymmetric (true) or symmetric
  std::string version = "GEMM";  // VERSION: AutoAWQ kernel layout of a packed awq checkpoint
  nlohmann::json layer_overrides = nlohmann::json::array();  // LAYER_OVERRIDES as written (recorded in reports)

  // W_BIT, Q_GROUP_SIZE, ZERO_POINT and the overrides; A_BIT 8.
  WeightScheme weight_scheme() const;
};

// The rule every weight-only section shares: VERSION names AutoAWQ's packed
// layout, and only GEMM is written.
std::vector<SectionFinding> weight_only_check(const nlohmann::json& section, const std::string& export_format);

// LAYER_OVERRIDES: per-Linear W_BIT / Q_GROUP_SIZE / ZERO_POINT / SKIP, and
// A_BIT when the algorithm quantizes activations.
ParamSpec layer_overrides_spec(bool activations);
// LAYER_OVERRIDES of the FP4 formats: SKIP only.
ParamSpec skip_overrides_spec();
// Q_GROUP_SIZE with its rule.
ParamSpec group_size_spec(std::string description);

// The weight-only keys of T (a WeightOnlyParams), in the order the catalog
// lists them.
template <class T>
ParamTable<T> weight_only_table(bool activation_overrides = false) {
  return ParamTable<T>()
      .add(&WeightOnlyParams::w_bit, param::integer("W_BIT", "weight bits", nullptr, 2, 8))
      .add(&WeightOnlyParams::group_size,
           group_size_spec("input columns per quantization group; -1 = per output channel"))
      .add(&WeightOnlyParams::zero_point,
           param::boolean("ZERO_POINT", "asymmetric (with zero point) when true, symmetric when false", nullptr))
      .add(&WeightOnlyParams::version, param::string("VERSION", "AutoAWQ kernel layout of the packed checkpoint",
                                                     nullptr, {"GEMM", "GEMV", "GEMV_FAST", "Marlin"}))
      .add(&WeightOnlyParams::layer_overrides, layer_overrides_spec(activation_overrides));
}

}  // namespace qjobs::quant
