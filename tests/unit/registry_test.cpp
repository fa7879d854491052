// Every algorithm the catalog calls available has an implementation, and
// every implementation is in the catalog.
#include <gtest/gtest.h>

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/registry.hpp"

namespace qjobs {
namespace {

TEST(Registry, MatchesTheCatalog) {
  for (const auto& a : algorithm_catalog()) {
    // Evaluate quantizes nothing: the worker's pipeline runs it itself.
    const bool implemented = a.name == "Evaluate" || quant::make_algorithm(a.name) != nullptr;
    EXPECT_EQ(implemented, a.available) << a.name;
  }
  for (const auto& row : quant::algorithm_registry()) {
    const auto* info = find_algorithm(row.name);
    ASSERT_NE(info, nullptr) << row.name << " is registered but not in the catalog";
    EXPECT_TRUE(info->available) << row.name;
    EXPECT_TRUE(row.make) << row.name;
  }
}

}  // namespace
}  // namespace qjobs
