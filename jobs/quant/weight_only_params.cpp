#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

std::vector<LinearOverride> linear_overrides(const nlohmann::json& list) {
  std::vector<LinearOverride> out;
  if (!list.is_array()) return out;
  for (const auto& o : list) {
    if (!o.is_object()) continue;
    LinearOverride r;
    r.pattern = o.value("pattern", "");
    r.skip = o.value("SKIP", false);
    if (o.contains("W_BIT") && o["W_BIT"].is_number()) r.bits = o["W_BIT"].get<int>();
    if (o.contains("Q_GROUP_SIZE") && o["Q_GROUP_SIZE"].is_number()) r.group_size = o["Q_GROUP_SIZE"].get<int64_t>();
    if (o.contains("ZERO_POINT") && o["ZERO_POINT"].is_boolean()) r.zero_point = o["ZERO_POINT"].get<bool>();
    if (o.contains("A_BIT") && o["A_BIT"].is_number()) r.a_bits = o["A_BIT"].get<int>();
    out.push_back(std::move(r));
  }
  return out;
}

// VERSION: another layout asked for an AWQ export is refused (it used to
// pack GEMM silently); with any other export it changes nothing, and the job
// says so.
std::vector<SectionFinding> weight_only_check(const nlohmann::json& section, const std::string& export_format) {
  const auto it = section.find("VERSION");
  if (it == section.end() || !it->is_string() || *it == "GEMM") return {};
  const std::string asked = *it;
  if (export_format == "awq")
    return {{{"VERSION"},
             true,
             "VERSION " + asked +
                 " is not written: qjobs packs AutoAWQ's GEMM layout only; set VERSION: "
                 "GEMM, or EXPORT_FORMAT: compressed-tensors (what vLLM serves)"}};
  return {{{"VERSION"},
           false,
           asked + " has no effect: it names an AutoAWQ packed layout, and EXPORT_FORMAT is " + export_format}};
}

WeightScheme WeightOnlyParams::weight_scheme() const {
  WeightScheme w;
  w.bits = static_cast<int>(w_bit);
  w.group_size = group_size;
  w.zero_point = zero_point;
  w.overrides = linear_overrides(layer_overrides);
  return w;
}

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
  return param::section_list("LAYER_OVERRIDES",
                             "Linears kept in full precision; the first entry whose glob pattern matches the name wins",
                             {param::string("pattern", "glob over names such as model.layers.0.mlp.down_proj", nullptr),
                              param::boolean("SKIP", "keep the matching Linears unquantized", nullptr)});
}

}  // namespace qjobs::quant
