#include "jobs/quant/layer_plan.hpp"

#include "common/error.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "spec/algorithm_catalog.hpp"

namespace qjobs::quant {

LinearQuant quant_for(const LinearPlan& plan, const std::string& linear, RangeMode range) {
  const auto& s = plan.at(linear);
  LinearQuant q;
  q.skip = s.skip;
  q.cfg.bits = s.bits;
  q.cfg.group_size = s.group_size;
  q.cfg.zero_point = s.zero_point;
  q.cfg.range = range;
  q.a_bits = s.a_bits;
  return q;
}

LinearPlan plan_linears(const std::string& algorithm, const nlohmann::json& section, const model::Checkpoint& ckpt) {
  const AlgorithmInfo* info = find_algorithm(algorithm);
  if (info == nullptr || !info->weights)
    throw Error(ErrorKind::invalid_input, "ALGORITHM " + algorithm + " has no per-Linear plan");
  std::vector<LinearShape> shapes;
  for (const auto& name : model::quantized_linear_weights(model::ModelConfig::from_json(ckpt.config()))) {
    LinearShape s{name.substr(0, name.size() - 7)};
    if (ckpt.has(name)) {
      const auto& shape = ckpt.info(name).shape;
      s.in = shape.back();
      s.out = shape.front();
    }
    shapes.push_back(std::move(s));
  }
  return LinearPlan(info->weights(section), shapes);
}

}  // namespace qjobs::quant
