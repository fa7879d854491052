// The registry of algorithm implementations: one row per line of
// QJOBS_ALGORITHMS (jobs/quant/algorithm_list.hpp), the list the catalog
// (spec/algorithm_catalog.hpp) is built from, so the two cannot disagree
// on names. Each algorithm's file defines make_NAME().
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

struct AlgorithmRow {
  std::string name;  // as ALGORITHM spells it
  std::function<std::unique_ptr<QuantAlgorithm>()> make;
};

const std::vector<AlgorithmRow>& algorithm_registry();

// nullptr when no implementation is registered under `name`.
std::unique_ptr<QuantAlgorithm> make_algorithm(const std::string& name);

}  // namespace qjobs::quant
