#include "jobs/quant/registry.hpp"

#include "jobs/quant/rtn.hpp"

namespace qjobs::quant {

const std::vector<AlgorithmRow>& algorithm_registry() {
  static const std::vector<AlgorithmRow> rows = {
      {"RTN", [] { return std::make_unique<RtnAlgorithm>(); }},
  };
  return rows;
}

std::unique_ptr<QuantAlgorithm> make_algorithm(const std::string& name) {
  for (const auto& r : algorithm_registry())
    if (r.name == name) return r.make();
  return nullptr;
}

}  // namespace qjobs::quant
