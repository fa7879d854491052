#include "worker/status_reporter.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>

#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;

std::atomic<bool> g_stop_requested{false};

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

StatusReporter::StatusReporter(JobDir dir, std::vector<std::string> stages, int attempt, double heartbeat_s)
    : dir_(std::move(dir)), stages_(std::move(stages)), attempt_(attempt) {
  stage_start_ = last_write_ = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    write(true);
  }
  if (heartbeat_s == 0) heartbeat_s = 30;
  if (heartbeat_s > 0) heartbeat_ = std::thread([this, heartbeat_s] { heartbeat_loop(heartbeat_s); });
}

StatusReporter::~StatusReporter() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

void StatusReporter::heartbeat_loop(double period_s) {
  const auto period = std::chrono::duration<double>(period_s);
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, period, [this] { return closing_; })) {
    // A final verdict is written once and never touched again.
    if (state_ == "RUNNING") write(true);
  }
}

void StatusReporter::close_stage() {
  if (!stage_.empty()) stage_seconds_[stage_] = seconds_since(stage_start_);
}

void StatusReporter::begin_stage(const std::string& stage, int64_t total) {
  std::lock_guard lock(mu_);
  close_stage();
  stage_ = stage;
  done_ = 0;
  total_ = total;
  eta_s_ = -1;
  stage_start_ = std::chrono::steady_clock::now();
  spdlog::info("stage {}", stage);
  event({{"type", "stage"}, {"stage", stage}, {"attempt", attempt_}});
  sample_disk();
  write(true);
}

namespace {

// Bytes of files under `root` that are unlinked but still mapped by this
// process (/proc/self/maps marks them "(deleted)"): space the job holds that
// no directory walk sees.
uint64_t deleted_mapped_bytes(const fs::path& root) {
  std::error_code ec;
  const std::string prefix = fs::weakly_canonical(fs::absolute(root, ec), ec).string() + "/";
  std::ifstream maps("/proc/self/maps");
  std::map<std::string, uint64_t> files;  // "dev inode" -> mapped end
  for (std::string line; std::getline(maps, line);) {
    constexpr std::string_view kDeleted = " (deleted)";
    if (!line.ends_with(kDeleted)) continue;
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode;
    in >> range >> perms >> offset >> dev >> inode;
    std::string path;
    std::getline(in >> std::ws, path);
    if (!path.starts_with(prefix)) continue;
    const auto dash = range.find('-');
    if (dash == std::string::npos) continue;
    const uint64_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uint64_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    auto& end = files[dev + " " + inode];
    end = std::max<uint64_t>(end, std::stoull(offset, nullptr, 16) + (hi - lo));
  }
  uint64_t total = 0;
  for (const auto& [key, end] : files) total += end;
  return total;
}

}  // namespace

void StatusReporter::sample_disk() {
  std::error_code ec;
  uint64_t total = deleted_mapped_bytes(dir_.root());
  for (fs::recursive_directory_iterator it(dir_.root(), fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) {
      const auto n = it->file_size(fec);
      if (!fec) total += n;
    }
  }
  disk_peak_ = std::max(disk_peak_, total);
}

uint64_t StatusReporter::disk_peak_bytes() {
  std::lock_guard lock(mu_);
  sample_disk();
  return disk_peak_;
}

void StatusReporter::progress(int64_t done, int64_t total, const std::string& what) {
  if (g_stop_requested.load()) throw Error(ErrorKind::cancelled, "stopped by request (SIGTERM)");
  std::lock_guard lock(mu_);
  done_ = done;
  total_ = total;
  const double elapsed = seconds_since(stage_start_);
  eta_s_ = (done > 0 && total > 0) ? elapsed / static_cast<double>(done) * static_cast<double>(total - done) : -1;
  if (!what.empty()) spdlog::debug("{} {}/{} {}", stage_, done, total, what);
  // One info line at most every 10 s, and the stage's last step, so that a
  // followed log (jobctl logs -f) shows where a long stage is.
  constexpr double kProgressLogS = 10;
  const auto now = std::chrono::steady_clock::now();
  if (total > 0 &&
      (done == total || std::chrono::duration<double>(now - last_progress_log_).count() >= kProgressLogS)) {
    last_progress_log_ = now;
    if (eta_s_ >= 0 && done < total)
      spdlog::info("progress {} {}/{} ({:.0f}%), ETA {:.0f} s", stage_, done, total, 100.0 * done / total, eta_s_);
    else spdlog::info("progress {} {}/{} ({:.0f}%) in {:.1f} s", stage_, done, total, 100.0 * done / total, elapsed);
  }
  sample_disk();
  write(done == total);
}

void StatusReporter::metric(const std::string& name, const nlohmann::json& value) {
  std::lock_guard lock(mu_);
  metrics_[name] = value;
  event({{"type", "metric"}, {"name", name}, {"value", value}});
  write(true);
}

void StatusReporter::warn(const std::string& message) {
  spdlog::warn("{}", message);
  event({{"type", "warning"}, {"message", message}});
}

void StatusReporter::event(nlohmann::json e) {
  try {
    dir_.append_event(std::move(e));
  } catch (const Error& err) {
    spdlog::error("cannot append event: {}", err.what());
  }
}

void StatusReporter::succeed() {
  std::lock_guard lock(mu_);
  close_stage();
  state_ = "SUCCEEDED";
  eta_s_ = 0;
  event({{"type", "finished"}, {"state", state_}, {"attempt", attempt_}});
  write(true);
}

void StatusReporter::fail(ErrorType type, const std::string& message) {
  std::lock_guard lock(mu_);
  close_stage();
  state_ = "FAILED";
  error_type_ = std::string(error_type_name(type));
  error_ = message;
  event({{"type", "finished"},
         {"state", state_},
         {"error_type", error_type_},
         {"error", message},
         {"attempt", attempt_}});
  write(true);
}

void StatusReporter::write(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_write_ < std::chrono::milliseconds(250)) return;
  last_write_ = now;
  const auto it = std::find(stages_.begin(), stages_.end(), stage_);
  nlohmann::json s = {
      {"state", state_},
      {"stage", stage_},
      {"stages", stages_},
      {"stage_index", it == stages_.end() ? -1 : static_cast<int>(it - stages_.begin())},
      {"done", done_},
      {"total", total_},
      {"eta_s", eta_s_},
      {"metrics", metrics_},
      {"stage_seconds", stage_seconds_},
      {"attempt", attempt_},
      {"pid", static_cast<int>(::getpid())},
      {"updated_at", unix_now()},
  };
  if (!error_type_.empty()) {
    s["error_type"] = error_type_;
    s["error"] = error_;
  }
  try {
    dir_.write_status(s);
  } catch (const Error& e) {
    spdlog::error("cannot write status.json: {}", e.what());
  }
}

}  // namespace qjobs::worker
