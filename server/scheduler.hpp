// The scheduler: matches QUEUED jobs to free capacity (GPU ids or CPU slots)
// by priority then age, starts them through a Dispatcher, enforces timeouts,
// carries out cancels (SIGTERM, grace, SIGKILL), and turns ended workers into
// final states. A worker that ends without a verdict sends its job back to
// QUEUED while attempts remain, else FAILED / WORKER_LOST. A worker whose
// status.json has not changed for stall_timeout_s is killed and treated as
// lost. A worker that failed on a full disk (NO_SPACE) is requeued after a
// pause while attempts remain.
//
// Backends: jobs start through one launching Dispatcher (local or Slurm);
// every attempt is named by its handle, so recovery watches local processes
// and Slurm jobs alike, and a server switched from one backend to the other
// still follows the attempts the old one started (pass both). With a backend
// that queues (Slurm), a dispatched job stays QUEUED with the stage "pending
// in Slurm (...)" until the backend starts it; TIMEOUT_S and the stall
// timeout count from then. Capacity is then --max-inflight: how many jobs
// qjobs hands to Slurm at once; Slurm decides where and when they run. A
// transient submission failure (controller down) leaves the job QUEUED with
// an event and is retried with backoff (1 s doubling to 30 s).
//
// Store failures never escape tick(): a transition that cannot be written
// (disk full, read-only, I/O error) is kept, with the worker's devices, and
// retried with backoff (0.1 s doubling to 5 s) until it goes through; while
// the store cannot write, no job starts. health() reports both.
//
// Thread safety: every public method may be called from any thread; they
// serialize on one mutex.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/job_dir.hpp"
#include "common/logging.hpp"
#include "server/dispatcher.hpp"
#include "server/store.hpp"

namespace qjobs::server {

struct Capacity {
  std::vector<std::string> gpus;  // CUDA ids; empty means CPU slots
  int slots = 1;                  // CPU mode: jobs at once (with Slurm: --max-inflight)
  bool slurm = false;             // jobs go to Slurm, which places them
  bool slurm_gres = false;        // ... asking for CUDA_ID's count of GPUs (--slurm-gres gpu)

  bool gpu_mode() const { return !gpus.empty(); }
  int size() const { return gpu_mode() ? static_cast<int>(gpus.size()) : slots; }
};

struct SchedulerOptions {
  std::filesystem::path jobs_root;  // user_data/jobs
  Capacity capacity;
  double cancel_grace_s = 10;       // SIGTERM -> SIGKILL
  double stall_timeout_s = 600;     // a RUNNING worker silent this long is lost; 0 = never
  double no_space_retry_s = 30;     // pause before retrying a NO_SPACE failure, times the attempt number
  std::function<double()> clock{};  // unix seconds; empty: the system clock (tests inject one)
};

struct SchedulerHealth {
  std::size_t unsettled = 0;  // ended workers whose transition is not stored yet
  std::string last_error;     // why the last store call of a tick failed, "" if none
};

class Scheduler {
 public:
  // `launcher` starts new attempts; `others` are backends whose attempts
  // may still be in the store from an earlier configuration.
  Scheduler(Store& store, Dispatcher& launcher, SchedulerOptions options, const std::vector<Dispatcher*>& others = {});

  // Takes over every attempt a previous server left (RUNNING, CANCELLING,
  // or QUEUED and dispatched): watches it through its backend, which reports
  // the ones already gone at the next tick. Attempts the launching backend
  // has but the store does not (submitted just before a crash) are adopted,
  // never submitted twice. Call once, first.
  void recover();
  // One pass: reap ended workers, enforce timeouts and grace periods, adopt
  // checks, then start queued jobs that fit. One pass at a time: waits for
  // a pass in progress. Call often (the control thread does, every 100 ms).
  void tick();
  // A pass now unless one is in progress (then that one, or the next, sees
  // what changed): for request threads, which must never wait on a pass
  // that waits on a slow backend. Returns whether it ran.
  bool try_tick();
  // Cancels a job; returns the state after the request, nullopt if unknown.
  // Never waits on a backend command: the row changes at once, and the
  // signal goes now when no backend call is in progress, else as soon as it
  // ends.
  std::optional<JobState> cancel(const std::string& id);

  // Records, once per job and attempt, that its status.json is invalid (an
  // event on the job); the file is then treated as absent. Takes only its
  // own lock, not the scheduler's, so a GET never waits on a tick.
  void report_bad_status(const std::string& id, int attempt, const std::string& problem);

  int busy_devices() const;
  // The launching backend's counters for /metrics.
  std::string dispatcher_metrics() const;
  const Capacity& capacity() const { return options_.capacity; }
  SchedulerHealth health() const;

 private:
  enum class KillReason { none, cancel, timeout, stall };
  struct Running {
    std::string job_id;
    std::string handle;
    Dispatcher* backend = nullptr;
    std::vector<std::string> devices;
    bool pending = false;  // dispatched, not started by the backend yet
    bool started = false;  // the backend said it runs; stored when `pending` is false
    KillReason kill = KillReason::none;
    std::optional<double> term_sent_at;
    bool killed = false;
    double since = 0;  // unix seconds it was started or adopted
  };
  // A worker that ended, waiting for its transition to be stored.
  struct Ended {
    Running r;
    AttemptUpdate how;
    double next_try = 0;
    double backoff = 0.1;
  };

  void tick_pass();  // REQUIRES: tick_mu_ held
  std::optional<JobState> cancel_locked(const std::string& id);
  void tick_locked();
  void start_queued();
  // Stores what an ended worker means for its job, then frees its devices;
  // when the store fails, keeps it in unsettled_ for a later tick.
  void settle(Ended e);
  // The one guarded transition for an ended worker. Throws on store failure,
  // having changed nothing.
  void finalize(const Running& r, const AttemptUpdate& how);
  void apply(Running& r, const AttemptUpdate& u);
  // Applies every backend's updates: stages, starts, and ends (settled).
  void poll_backends();
  Dispatcher* backend_of(const std::string& handle) const;
  double now() const;
  void settle_without_process(const JobRecord& job);
  void send_term(Running& r, KillReason why);
  void check_stall(Running& r, double now);
  void server_event(const std::string& id, nlohmann::json e);
  // A state change with its event, so that no reader sees the new state
  // before events.jsonl holds it: the event is appended first, then
  // `commit` changes the row (a guarded update, true when it applied); when
  // it did not apply, or threw, an event saying so follows. Returns commit's
  // answer (rethrows its exception).
  bool transition(const std::string& id, nlohmann::json event, const std::function<bool()>& commit);
  void note_store_failure(const std::exception& e);
  std::filesystem::path job_dir(const std::string& id) const;
  // The job's folder, made first for a queued job that has none yet
  // (job_folder.hpp); a failure is logged and the plain path returned.
  JobDir folder(const std::string& id);

  // Dispatchers are not thread-safe and a call may block for its command
  // timeout (sbatch while slurmctld is down). Every call into one holds
  // dispatch_mu_ and never mu_, so cancel and the API never wait behind it.
  // call_backend: REQUIRES mu_ held by this thread; releases it during f.
  template <class F>
  auto call_backend(F&& f);
  // Signals are queued (under mu_ or not) and sent by whoever holds
  // dispatch_mu_ next: the end of a pass, a cancel, or before a backend call.
  void queue_signal(Dispatcher* d, const std::string& handle, int sig);
  void flush_signals();  // REQUIRES: dispatch_mu_ held

  Store& store_;
  Dispatcher& launcher_;
  std::vector<Dispatcher*> backends_;  // launcher_ first
  SchedulerOptions options_;
  std::mutex tick_mu_;  // one pass at a time; taken before mu_
  mutable std::mutex mu_;
  std::mutex dispatch_mu_;  // every call into a Dispatcher
  std::mutex signals_mu_;
  std::vector<std::tuple<Dispatcher*, std::string, int>> pending_signals_;  // guarded by signals_mu_
  std::set<std::string> free_;                                              // free device tokens
  std::map<std::string, Running> running_;                                  // by handle
  double next_launch_ = 0;                                                  // after a transient launch failure
  double launch_backoff_ = 1;
  std::set<std::string> launch_failure_told_;  // jobs told of the current launch outage
  std::vector<Ended> unsettled_;
  double next_probe_ = 0;  // when to test an unwritable store again
  double probe_backoff_ = 0.1;
  LogLimiter store_log_{5};

  // Read by health() and busy_devices() without mu_, so that /healthz and
  // /metrics answer even while a tick waits on a hung store.
  void publish();  // REQUIRES: mu_ held
  std::atomic<std::size_t> unsettled_count_{0};
  std::atomic<int> busy_count_{0};
  mutable std::mutex error_mu_;
  std::string last_error_;  // guarded by error_mu_

  std::mutex bad_status_mu_;
  std::set<std::string> bad_status_reported_;  // "id#attempt"; guarded by bad_status_mu_
};

}  // namespace qjobs::server
