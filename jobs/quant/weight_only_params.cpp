#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

ParamSpec group_size_spec(std::string description) {
  auto p = param::integer("Q_GROUP_SIZE", std::move(description), nullptr, -1, 1 << 20);
  p.check = param::group_size_rule;
  return p;
}

ParamSpec layer_overrides_spec(bool activations) {
  auto p = param::section_list(
      "LAYER_OVERRIDES", "per-Linear settings; the first entry whose glob pattern matches the name wins",
      {param::string("pattern", "glob over names such as model.layers.0.mlp.down_proj", nullptr),
       param::integer("W_BIT", "bits for the matching Linears", nullptr, 2, 8),
       group_size_spec("group size for the matching Linears"),
       param::boolean("ZERO_POINT", "asymmetric for the matching Linears", nullptr),
       param::boolean("SKIP", "keep the matching Linears unquantized", nullptr)});
  if (activations)
    p.children.push_back(param::integer(
        "A_BIT", "input activation bits of the matching Linears (16: 16-bit, 0: full precision)", nullptr, 0, 16));
  return p;
}

ParamSpec skip_overrides_spec() {
  return param::section_list(
      "LAYER_OVERRIDES", "Linears kept in full precision; the first entry whose glob pattern matches the name wins",
      {param::string("pattern", "glob over names such as model.layers.0.mlp.down_proj", nullptr),
       param::boolean("SKIP", "keep the matching Linears unquantized", nullptr)});
}

}  // namespace qjobs::quant
