// Where the reference vectors live: $QJOBS_REFERENCE_DIR, or nothing (the
// conformance tests then skip, by name).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace qjobs::testing {

inline std::optional<std::filesystem::path> reference_dir() {
  const char* d = std::getenv("QJOBS_REFERENCE_DIR");
  if (d == nullptr || *d == '\0' || !std::filesystem::is_directory(d)) return std::nullopt;
  return std::filesystem::path(d);
}

#define QJOBS_REQUIRE_REFERENCE(var)                                                        \
  const auto var##_opt = ::qjobs::testing::reference_dir();                                 \
  if (!var##_opt) GTEST_SKIP() << "QJOBS_REFERENCE_DIR is not set: reference test skipped"; \
  const std::filesystem::path var = *var##_opt

// The reference models every forward-pass test runs on
// ($QJOBS_REFERENCE_DIR/models and families), and a test name from each.
inline auto reference_models() {
  return ::testing::Values("models/stories260K", "models/tiny-llama3", "models/tiny-qwen2", "models/tiny-mistral",
                           "families/tiny-mixtral", "families/tiny-qwen2-moe", "families/tiny-phi3",
                           "families/tiny-gemma2", "families/tiny-qwen3");
}

inline std::string reference_model_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param.substr(info.param.find('/') + 1);
  for (auto& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

}  // namespace qjobs::testing
