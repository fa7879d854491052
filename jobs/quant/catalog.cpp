// The catalog spec/algorithm_catalog.hpp declares: one row per line of
// QJOBS_ALGORITHMS, each built by its algorithm's NAME_info() from the
// parameter declarations in NAME_params.cpp, and the worker's own
// Evaluate mode. Built into qjobs_algorithm_params, which does not link
// libtorch.
#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/algorithm_list.hpp"

namespace qjobs {
namespace quant {
#define QJOBS_DECLARE_INFO(name) AlgorithmInfo name##_info();
QJOBS_ALGORITHMS(QJOBS_DECLARE_INFO)
#undef QJOBS_DECLARE_INFO
}  // namespace quant

const std::vector<AlgorithmInfo>& algorithm_catalog() {
  static const std::vector<AlgorithmInfo> catalog = [] {
    std::vector<AlgorithmInfo> rows;
#define QJOBS_CATALOG_ROW(name) rows.push_back(quant::name##_info());
    QJOBS_ALGORITHMS(QJOBS_CATALOG_ROW)
#undef QJOBS_CATALOG_ROW
    rows.push_back(
        {"Evaluate", "evaluate an existing checkpoint (full precision or packed); needs eval tasks", true, {}});
    return rows;
  }();
  return catalog;
}

}  // namespace qjobs
