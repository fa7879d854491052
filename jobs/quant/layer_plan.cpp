#include "jobs/quant/layer_plan.hpp"

#include <fnmatch.h>

namespace qjobs::quant {

LinearPlan plan_for(const std::string& linear, const nlohmann::json& params, RangeMode range) {
  LinearPlan p;
  p.cfg.bits = params.value("W_BIT", 4);
  p.cfg.group_size = params.value("Q_GROUP_SIZE", 128);
  p.cfg.zero_point = params.value("ZERO_POINT", true);
  p.cfg.range = range;
  p.a_bits = params.value("A_BIT", 8);
  if (params.contains("LAYER_OVERRIDES"))
    for (const auto& o : params["LAYER_OVERRIDES"]) {
      if (fnmatch(o.value("pattern", "").c_str(), linear.c_str(), 0) != 0) continue;
      p.skip = o.value("SKIP", false);
      p.cfg.bits = o.value("W_BIT", p.cfg.bits);
      p.cfg.group_size = o.value("Q_GROUP_SIZE", p.cfg.group_size);
      p.cfg.zero_point = o.value("ZERO_POINT", p.cfg.zero_point);
      p.a_bits = o.value("A_BIT", p.a_bits);
      break;
    }
  return p;
}

nlohmann::json describe_overrides(const nlohmann::json& params) {
  return params.value("LAYER_OVERRIDES", nlohmann::json::array());
}

}  // namespace qjobs::quant
