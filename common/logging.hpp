// Logging set-up shared by every program: one call at start-up.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

namespace qjobs {

// Sends the default spdlog logger to stderr and, when `file` is set, also
// appends to it. `level` is spdlog's name ("info", "debug", ...).
void setup_logging(const std::string& program, const std::optional<std::filesystem::path>& file,
                   const std::string& level = "info");

// Lets a repeated log line through at most once per `period`, counting the
// ones it held back, so that a failure in a loop (accept on EMFILE, a store
// that cannot write) costs a line every few seconds, not megabytes.
// Thread safety: allow() may be called from any thread.
class LogLimiter {
 public:
  explicit LogLimiter(double period_s = 10) : period_s_(period_s) {}
  // True when this occurrence should be logged; *suppressed is then the
  // number held back since the last one logged.
  bool allow(uint64_t* suppressed);

 private:
  double period_s_;
  std::mutex mu_;
  double last_ = -1e300;
  uint64_t held_ = 0;
};

}  // namespace qjobs
