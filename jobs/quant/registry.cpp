#include "jobs/quant/registry.hpp"

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/algorithm_list.hpp"

namespace qjobs::quant {

#define QJOBS_DECLARE_ALGORITHM(name) \
  AlgorithmInfo name##_info();        \
  std::unique_ptr<QuantAlgorithm> make_##name();
QJOBS_ALGORITHMS(QJOBS_DECLARE_ALGORITHM)
#undef QJOBS_DECLARE_ALGORITHM

const std::vector<AlgorithmRow>& algorithm_registry() {
  static const std::vector<AlgorithmRow> rows = {
#define QJOBS_REGISTRY_ROW(algo) {algo##_info().name, &make_##algo},
      QJOBS_ALGORITHMS(QJOBS_REGISTRY_ROW)
#undef QJOBS_REGISTRY_ROW
  };
  return rows;
}

std::unique_ptr<QuantAlgorithm> make_algorithm(const std::string& name) {
  for (const auto& r : algorithm_registry())
    if (r.name == name) return r.make();
  return nullptr;
}

}  // namespace qjobs::quant
