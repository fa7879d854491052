// Logging set-up shared by every program: one call at start-up.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace qjobs {

// Sends the default spdlog logger to stderr and, when `file` is set, also
// appends to it. `level` is spdlog's name ("info", "debug", ...).
void setup_logging(const std::string& program, const std::optional<std::filesystem::path>& file,
                   const std::string& level = "info");

}  // namespace qjobs
