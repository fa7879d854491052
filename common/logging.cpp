#include "common/logging.hpp"

#include <chrono>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace qjobs {

void setup_logging(const std::string& program, const std::optional<std::filesystem::path>& file,
                   const std::string& level) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (file) {
    std::filesystem::create_directories(file->parent_path());
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file->string(), false));
  }
  auto logger = std::make_shared<spdlog::logger>(program, sinks.begin(), sinks.end());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool LogLimiter::allow(uint64_t* suppressed) {
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  std::lock_guard lock(mu_);
  if (now - last_ < period_s_) {
    ++held_;
    return false;
  }
  last_ = now;
  if (suppressed) *suppressed = held_;
  held_ = 0;
  return true;
}

}  // namespace qjobs
