// The scheduler: matches QUEUED jobs to free capacity (GPU ids or CPU slots)
// by priority then age, starts them through a Dispatcher, enforces timeouts,
// carries out cancels (SIGTERM, grace, SIGKILL), and turns ended workers into
// final states. A worker that ends without a verdict sends its job back to
// QUEUED while attempts remain, else FAILED / WORKER_LOST.
//
// Thread safety: none; call everything from the server's event loop thread.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/dispatcher.hpp"
#include "server/store.hpp"

namespace qjobs::server {

struct Capacity {
  std::vector<std::string> gpus;  // CUDA ids; empty means CPU slots
  int slots = 1;                  // CPU mode: jobs at once

  bool gpu_mode() const { return !gpus.empty(); }
  int size() const { return gpu_mode() ? static_cast<int>(gpus.size()) : slots; }
};

struct SchedulerOptions {
  std::filesystem::path jobs_root;  // user_data/jobs
  Capacity capacity;
  double cancel_grace_s = 10;       // SIGTERM -> SIGKILL
};

class Scheduler {
 public:
  Scheduler(Store& store, Dispatcher& dispatcher, SchedulerOptions options);

  // Settles jobs left RUNNING/CANCELLING by a previous server: adopts the
  // workers still alive, finishes or requeues the others. Call once, first.
  void recover();
  // One pass: reap ended workers, enforce timeouts and grace periods, adopt
  // checks, then start queued jobs that fit. Cheap; call often.
  void tick();
  // Cancels a job; returns the state after the request, nullopt if unknown.
  std::optional<JobState> cancel(const std::string& id);

  int busy_devices() const;
  const Capacity& capacity() const { return options_.capacity; }

 private:
  enum class KillReason { none, cancel, timeout };
  struct Running {
    std::string job_id;
    int pid = 0;
    std::string start_token;
    std::vector<std::string> devices;
    bool adopted = false;          // not our child: poll alive() instead of reaping
    KillReason kill = KillReason::none;
    std::optional<double> term_sent_at;
    bool killed = false;
  };

  void start_queued();
  void finalize(const Running& r, std::optional<int> exit_code, std::optional<int> signal);
  void settle_without_process(const JobRecord& job);
  void send_term(Running& r, KillReason why);
  void server_event(const std::string& id, nlohmann::json e);
  std::filesystem::path job_dir(const std::string& id) const;

  Store& store_;
  Dispatcher& dispatcher_;
  SchedulerOptions options_;
  std::set<std::string> free_;               // free device tokens
  std::map<int, Running> running_;           // by pid
};

}  // namespace qjobs::server
