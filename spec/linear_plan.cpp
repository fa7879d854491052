#include "spec/linear_plan.hpp"

#include <fnmatch.h>

#include "common/error.hpp"

namespace qjobs {

LinearScheme scheme_for(const quant::WeightScheme& w, const std::string& linear) {
  LinearScheme s;
  s.bits = w.bits;
  s.group_size = w.group_size;
  s.zero_point = w.zero_point;
  s.a_bits = w.a_bits;
  for (const auto& o : w.overrides) {
    if (fnmatch(o.pattern.c_str(), linear.c_str(), 0) != 0) continue;
    s.skip = o.skip;
    s.bits = o.bits.value_or(s.bits);
    s.group_size = o.group_size.value_or(s.group_size);
    s.zero_point = o.zero_point.value_or(s.zero_point);
    s.a_bits = o.a_bits.value_or(s.a_bits);
    break;
  }
  return s;
}

LinearPlan::LinearPlan(const quant::WeightScheme& weights, const std::vector<LinearShape>& shapes) {
  for (const auto& shape : shapes) {
    LinearScheme s = scheme_for(weights, shape.name);
    const int64_t g = s.group_size;
    if (!s.skip && g > 0 && shape.in > g && shape.in % g != 0) {
      s.group_size = -1;
      s.ragged = true;
    }
    linears_[shape.name] = s;
  }
}

const LinearScheme& LinearPlan::at(const std::string& linear) const {
  const auto it = linears_.find(linear);
  if (it == linears_.end()) throw Error(ErrorKind::internal, "the per-Linear plan has no entry for " + linear);
  return it->second;
}

std::vector<std::string> LinearPlan::ragged() const {
  std::vector<std::string> out;
  for (const auto& [name, s] : linears_)
    if (s.ragged) out.push_back(name);
  return out;
}

}  // namespace qjobs
