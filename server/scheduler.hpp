// The scheduler: matches QUEUED jobs to free capacity (GPU ids or CPU slots)
// by priority then age, starts them through a Dispatcher, enforces timeouts,
// carries out cancels (SIGTERM, grace, SIGKILL), and turns ended workers into
// final states. A worker that ends without a verdict sends its job back to
// QUEUED while attempts remain, else FAILED / WORKER_LOST. A worker whose
// status.json has not changed for stall_timeout_s is killed and treated as
// lost. A worker that failed on a full disk (NO_SPACE) is requeued after a
// pause while attempts remain.
//
// Store failures never escape tick(): a transition that cannot be written
// (disk full, read-only, I/O error) is kept, with the worker's devices, and
// retried with backoff (0.1 s doubling to 5 s) until it goes through; while
// the store cannot write, no job starts. health() reports both.
//
// Thread safety: every public method may be called from any thread; they
// serialize on one mutex.
#pragma once

#include <filesystem>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/logging.hpp"
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
  double stall_timeout_s = 600;     // a RUNNING worker silent this long is lost; 0 = never
  double no_space_retry_s = 30;     // pause before retrying a NO_SPACE failure, times the attempt number
};

struct SchedulerHealth {
  std::size_t unsettled = 0;        // ended workers whose transition is not stored yet
  std::string last_error;           // why the last store call of a tick failed, "" if none
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

  // Records, once per job and attempt, that its status.json is invalid (an
  // event on the job); the file is then treated as absent. Takes only its
  // own lock, not the scheduler's, so a GET never waits on a tick.
  void report_bad_status(const std::string& id, int attempt, const std::string& problem);

  int busy_devices() const;
  const Capacity& capacity() const { return options_.capacity; }
  SchedulerHealth health() const;

 private:
  enum class KillReason { none, cancel, timeout, stall };
  struct Running {
    std::string job_id;
    int pid = 0;
    std::string start_token;
    std::vector<std::string> devices;
    bool adopted = false;          // not our child: poll alive() instead of reaping
    KillReason kill = KillReason::none;
    std::optional<double> term_sent_at;
    bool killed = false;
    double since = 0;              // unix seconds it was started or adopted
  };
  // A worker that ended, waiting for its transition to be stored.
  struct Ended {
    Running r;
    std::optional<int> exit_code, signal;
    double next_try = 0;
    double backoff = 0.1;
  };

  void tick_locked();
  void start_queued();
  // Stores what an ended worker means for its job, then frees its devices;
  // when the store fails, keeps it in unsettled_ for a later tick.
  void settle(Ended e);
  // The one guarded transition for an ended worker. Throws on store failure,
  // having changed nothing.
  void finalize(const Running& r, std::optional<int> exit_code, std::optional<int> signal);
  void settle_without_process(const JobRecord& job);
  void send_term(Running& r, KillReason why);
  void check_stall(Running& r, double now);
  void server_event(const std::string& id, nlohmann::json e);
  void note_store_failure(const std::exception& e);
  std::filesystem::path job_dir(const std::string& id) const;

  Store& store_;
  Dispatcher& dispatcher_;
  SchedulerOptions options_;
  mutable std::mutex mu_;
  std::set<std::string> free_;               // free device tokens
  std::map<int, Running> running_;           // by pid
  std::vector<Ended> unsettled_;
  double next_probe_ = 0;                    // when to test an unwritable store again
  double probe_backoff_ = 0.1;
  LogLimiter store_log_{5};

  // Read by health() and busy_devices() without mu_, so that /healthz and
  // /metrics answer even while a tick waits on a hung store.
  void publish();                            // REQUIRES: mu_ held
  std::atomic<std::size_t> unsettled_count_{0};
  std::atomic<int> busy_count_{0};
  mutable std::mutex error_mu_;
  std::string last_error_;                   // guarded by error_mu_

  std::mutex bad_status_mu_;
  std::set<std::string> bad_status_reported_;  // "id#attempt"; guarded by bad_status_mu_
};

}  // namespace qjobs::server
