#include "jobs/quant/layer_plan.hpp"

#include "common/linear_rule.hpp"

namespace qjobs::quant {

LinearPlan plan_for(const std::string& linear, const nlohmann::json& params, RangeMode range) {
  const auto r = linear_rule(linear, params);
  LinearPlan p;
  p.skip = r.skip;
  p.cfg.bits = r.bits;
  p.cfg.group_size = r.group_size;
  p.cfg.zero_point = r.zero_point;
  p.cfg.range = range;
  p.a_bits = r.a_bits;
  return p;
}

std::vector<std::string> ragged_linears(const std::map<std::string, int64_t>& in_features, const nlohmann::json& params) {
  std::vector<std::string> out;
  for (const auto& [name, in] : in_features) {
    const auto p = plan_for(name, params, RangeMode::min_max);
    if (!p.skip && p.cfg.group_size > 0 && in > p.cfg.group_size && in % p.cfg.group_size != 0) out.push_back(name);
  }
  return out;
}


}  // namespace qjobs::quant
