// Writes a worker's progress into its job directory: status.json (replaced
// atomically, at most every 0.25 s unless the stage changes) and events.jsonl.
// A heartbeat thread rewrites status.json every `heartbeat_s` seconds even
// when nothing changes (inside one long GEMM, say), so the server can tell a
// slow worker from a hung one; it stops with the reporter.
// Thread safety: the public methods are called from one thread; they and the
// heartbeat share the state under a mutex.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "common/job_state.hpp"

namespace qjobs::worker {

// Set by the SIGTERM/SIGINT handler; progress() turns it into Error(cancelled).
extern std::atomic<bool> g_stop_requested;

class StatusReporter {
 public:
  // heartbeat_s: the status.json rewrite period (Environment::heartbeat_s); 0: 30 s; negative: none.
  StatusReporter(JobDir dir, std::vector<std::string> stages, int attempt, double heartbeat_s = 0);
  ~StatusReporter();
  StatusReporter(const StatusReporter&) = delete;
  StatusReporter& operator=(const StatusReporter&) = delete;

  // Starts `stage` (one of the names given at construction) with `total`
  // progress units (0 = unknown).
  void begin_stage(const std::string& stage, int64_t total = 0);
  // Reports progress in the current stage; throws Error(cancelled) when a
  // stop was requested.
  void progress(int64_t done, int64_t total, const std::string& what = "");
  void metric(const std::string& name, const nlohmann::json& value);
  void warn(const std::string& message);
  void event(nlohmann::json e);

  void succeed();
  void fail(ErrorType type, const std::string& message);

  const nlohmann::json& metrics() const { return metrics_; }
  // Seconds spent per finished stage.
  const nlohmann::json& stage_seconds() const { return stage_seconds_; }
  // The most bytes the job directory held at any stage start or progress
  // step so far (files under it, calibration state and output included):
  // the disk a job needs, sampled where it grows.
  uint64_t disk_peak_bytes();

 private:
  void write(bool force);  // REQUIRES: mu_ held
  void close_stage();
  void heartbeat_loop(double period_s);
  void sample_disk();  // REQUIRES: mu_ held

  JobDir dir_;
  std::vector<std::string> stages_;
  int attempt_;
  std::string state_ = "RUNNING";
  std::string stage_;
  int64_t done_ = 0, total_ = 0;
  double eta_s_ = -1;
  std::string error_type_, error_;
  nlohmann::json metrics_ = nlohmann::json::object();
  nlohmann::json stage_seconds_ = nlohmann::json::object();
  std::chrono::steady_clock::time_point stage_start_, last_write_;
  // When progress() last wrote its info line to the log (`jobctl logs -f`
  // shows one at most every kProgressLogS seconds, and the stage's last).
  std::chrono::steady_clock::time_point last_progress_log_;
  uint64_t disk_peak_ = 0;
  std::mutex mu_;
  std::condition_variable wake_;
  bool closing_ = false;
  std::thread heartbeat_;
};

}  // namespace qjobs::worker
