// The per-Linear plan: which weight settings each decoder Linear gets, built
// once in the pipeline from the algorithm's typed weight settings
// (quant::WeightScheme, from its catalog row) and the checkpoint's shapes,
// and handed to the algorithm and the exports. The server builds the same
// plan from a model's config.json to check an export at submission.
//
// The rules, in order:
//   1. the section's W_BIT / Q_GROUP_SIZE / ZERO_POINT / A_BIT;
//   2. the first LAYER_OVERRIDES entry whose glob `pattern` matches the
//      Linear's name ("model.layers.0.mlp.down_proj") replaces what it gives,
//      or SKIPs the Linear (its original weights are kept);
//   3. ragged widths: no export form holds a short last group (vLLM,
//      compressed-tensors, ONNX encodings), so a Linear whose input width is
//      above its group size and not a multiple of it is quantized per output
//      channel, whatever the form; a packed checkpoint and its fake_quant twin
//      are then the same model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "jobs/quant/weight_scheme.hpp"

namespace qjobs {

// The settings of one Linear.
struct LinearScheme {
  bool skip = false;
  int bits = 4;
  int64_t group_size = 128;  // -1: per output channel
  bool zero_point = true;
  int a_bits = 8;
  bool ragged = false;  // rule 3 applied: group_size was above -1 and did not divide the width
};

// Rules 1 and 2 for the Linear `linear`.
LinearScheme scheme_for(const quant::WeightScheme& weights, const std::string& linear);

struct LinearShape {
  std::string name;  // "model.layers.0.mlp.down_proj", without ".weight"
  int64_t in = 0;    // input features; 0 = unknown (rule 3 is not applied)
  int64_t out = 0;
};

class LinearPlan {
 public:
  LinearPlan() = default;
  LinearPlan(const quant::WeightScheme& weights, const std::vector<LinearShape>& shapes);

  // Throws Error(internal) for a Linear the plan was not built with.
  const LinearScheme& at(const std::string& linear) const;
  bool contains(const std::string& linear) const { return linears_.count(linear) > 0; }
  const std::map<std::string, LinearScheme>& linears() const { return linears_; }
  // The Linears rule 3 moved to per-channel groups, in name order.
  std::vector<std::string> ragged() const;

 private:
  std::map<std::string, LinearScheme> linears_;
};

}  // namespace qjobs
