// Where worker processes run. The local backend forks them on this machine;
// a Slurm backend will implement the same interface.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qjobs::server {

struct LaunchRequest {
  std::string job_id;
  std::filesystem::path job_dir;
  std::filesystem::path spec_path;
  std::string cuda_visible_devices;  // the value to export; "" hides every GPU
  int attempt = 1;                   // 1-based, exported as QJOBS_ATTEMPT
};

struct LaunchedProcess {
  int pid = 0;
  std::string start_token;  // identifies this process among any that reuse its pid
};

struct ProcessExit {
  int pid = 0;
  std::optional<int> exit_code;  // set when it exited normally
  std::optional<int> signal;     // set when a signal ended it
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Starts a worker for `req`. Throws Error(io) when it cannot.
  virtual LaunchedProcess launch(const LaunchRequest& req) = 0;
  // Sends `sig` to the worker and everything it started.
  virtual void signal(int pid, int sig) = 0;
  // Workers started by this dispatcher that have ended since the last call;
  // never blocks.
  virtual std::vector<ProcessExit> reap() = 0;
  // Whether a process not started by this instance (found in the store after
  // a restart) is still running.
  virtual bool alive(int pid, const std::string& start_token) = 0;
};

// Forks `qjobs-worker run SPEC --job-dir DIR` in its own process group, with
// stdout and stderr appended to DIR/logs/worker.stdio.log and no other
// descriptor inherited. `heartbeat_s` > 0 is exported as QJOBS_HEARTBEAT_S:
// how often the worker must rewrite status.json even when nothing changes.
class LocalDispatcher final : public Dispatcher {
 public:
  explicit LocalDispatcher(std::filesystem::path worker_binary, double heartbeat_s = 0);
  LaunchedProcess launch(const LaunchRequest& req) override;
  void signal(int pid, int sig) override;
  std::vector<ProcessExit> reap() override;
  bool alive(int pid, const std::string& start_token) override;

 private:
  std::filesystem::path worker_;
  double heartbeat_s_ = 0;
};

// The start time of `pid` from /proc (clock ticks since boot), "" if gone.
std::string process_start_token(int pid);

}  // namespace qjobs::server
