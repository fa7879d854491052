// The per-Linear plan (spec/linear_plan.hpp) on the quantizer's side: the
// plan of a job's checkpoint, and one Linear's entry as the quantizer's
// config. The pipeline builds the plan once (plan_linears) and hands it to
// the algorithm in QuantInputs::plan; no algorithm reads a weight setting
// from the spec's JSON.
//
// An override may set W_BIT, Q_GROUP_SIZE, ZERO_POINT or SKIP (keep the
// original weights), and, for the algorithms that quantize activations,
// A_BIT (the Linear's input bits; 16 keeps Qualcomm-style 16-bit
// activations, 0 full precision), so the mobile recipes (w4 with some
// layers w8, first and last layers kept) are one YAML list away.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "jobs/quant/quantizer.hpp"
#include "spec/linear_plan.hpp"

namespace qjobs::model {
class Checkpoint;
}

namespace qjobs::quant {

struct LinearQuant {
  bool skip = false;
  WeightQuantConfig cfg;
  int a_bits = 8;
};

// Linear `linear`'s entry of `plan` with the algorithm's range mode.
// Throws Error(internal) when the plan has no such Linear.
LinearQuant quant_for(const LinearPlan& plan, const std::string& linear, RangeMode range);

// The plan of every quantized decoder Linear of `ckpt` (its family's
// Linears, widths as stored) for ALGORITHM `algorithm` with `section` (the
// spec's section, validated): the algorithm's catalog row turns the
// section into its weight settings, parsed once here.
LinearPlan plan_linears(const std::string& algorithm, const nlohmann::json& section, const model::Checkpoint& ckpt);

}  // namespace qjobs::quant
