// Where the reference vectors live: $QJOBS_REFERENCE_DIR, or nothing (the
// conformance tests then skip, by name).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>

#include <gtest/gtest.h>

namespace qjobs::testing {

inline std::optional<std::filesystem::path> reference_dir() {
  const char* d = std::getenv("QJOBS_REFERENCE_DIR");
  if (d == nullptr || *d == '\0' || !std::filesystem::is_directory(d)) return std::nullopt;
  return std::filesystem::path(d);
}

#define QJOBS_REQUIRE_REFERENCE(var)                                                  \
  const auto var##_opt = ::qjobs::testing::reference_dir();                           \
  if (!var##_opt) GTEST_SKIP() << "QJOBS_REFERENCE_DIR is not set: reference test skipped"; \
  const std::filesystem::path var = *var##_opt

}  // namespace qjobs::testing
