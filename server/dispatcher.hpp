// Where worker processes run. A dispatched attempt is named by an opaque
// handle, a string the store keeps with the job, so that the scheduler, the
// store and recovery after a restart treat every backend alike:
//   local: "local:PID:START"   (START: the process's start time, against pid reuse)
//   Slurm: "slurm:JOBID@CLUSTER"
// The local backend forks workers on this machine; the Slurm backend submits
// them with sbatch, watches them with squeue/sacct and cancels with scancel.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qjobs::server {

struct LaunchRequest {
  std::string job_id;
  std::filesystem::path job_dir;
  std::filesystem::path spec_path;
  std::string cuda_visible_devices;  // local: the value to export; "" hides every GPU
  int devices_requested = 1;         // Slurm: how many GPUs to ask for (with --slurm-gres)
  int attempt = 1;                   // 1-based, exported as QJOBS_ATTEMPT
  double timeout_s = 0;              // TIMEOUT_S; 0 = none
  int priority = 0;                  // PRIORITY, -100..100
};

// What a backend knows about one attempt, reported by poll() when it changes.
struct AttemptUpdate {
  enum class Phase { pending, running, ended };
  // How an ended attempt ended, as far as the backend can tell; the worker's
  // own status.json decides the rest.
  enum class End {
    exited,     // the worker process ended (exit code or signal, when known)
    lost,       // the backend lost it (node failure, out of memory, preempted)
    timeout,    // the backend's time limit ended it
    cancelled,  // cancelled by someone other than qjobs
  };
  std::string handle;
  Phase phase = Phase::ended;
  std::string stage;  // pending: why it waits, e.g. "pending in Slurm (Resources)"
  End end = End::exited;
  std::optional<int> exit_code;  // set when it exited normally
  std::optional<int> signal;     // set when a signal ended it
  std::string detail;            // e.g. "Slurm job 17 NODE_FAIL", "cancelled in Slurm by alice (uid 1000)"
};

// A backend attempt that the store has no handle for: submitted just before
// a server was killed, or by a submission whose answer was lost.
struct UnrecordedAttempt {
  std::string job_id;
  int attempt = 0;
  std::string handle;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // The handle prefix of this backend: "local" or "slurm".
  virtual std::string backend() const = 0;
  // Starts (or submits) a worker for `req` and returns its handle; the
  // attempt is then watched. Throws Error(io) when it cannot; a transient
  // failure (the controller unreachable) is also Error(io), and transient()
  // says so.
  virtual std::string launch(const LaunchRequest& req) = 0;
  // Whether the last launch failure may go away by itself (retry later)
  // rather than being wrong for this job.
  virtual bool transient() const { return false; }
  // Sends `sig` (SIGTERM: cancel, SIGKILL: kill) to the attempt and
  // everything it started.
  virtual void signal(const std::string& handle, int sig) = 0;
  // Watches an attempt found in the store after a restart.
  virtual void watch(const std::string& handle) = 0;
  // Changes since the last call, for every watched attempt; an ended one is
  // reported once and then no longer watched. Never blocks for long.
  virtual std::vector<AttemptUpdate> poll() = 0;
  // Attempts the backend has that carry a qjobs job id (for recovery).
  virtual std::vector<UnrecordedAttempt> unrecorded() { return {}; }
  // Whether launch() starts the worker at once (local) or queues it with a
  // backend that starts it later (Slurm).
  virtual bool queues() const { return false; }
  // Prometheus lines of the backend's own counters ("" none); thread-safe.
  virtual std::string metrics() const { return ""; }
};

// The backend name of `handle` ("local", "slurm"), "" when it has none.
std::string handle_backend(const std::string& handle);

// Forks `qjobs-worker run SPEC --job-dir DIR` in its own process group, with
// stdout and stderr appended to DIR/logs/worker.stdio.log and no other
// descriptor inherited. `heartbeat_s` > 0 is exported as QJOBS_HEARTBEAT_S:
// how often the worker must rewrite status.json even when nothing changes.
// Waits only for the processes it started (never waitpid(-1)), so that other
// children of the server (Slurm commands) are not taken from their owners.
class LocalDispatcher final : public Dispatcher {
 public:
  explicit LocalDispatcher(std::filesystem::path worker_binary, double heartbeat_s = 0);
  std::string backend() const override { return "local"; }
  std::string launch(const LaunchRequest& req) override;
  void signal(const std::string& handle, int sig) override;
  void watch(const std::string& handle) override;
  std::vector<AttemptUpdate> poll() override;

 private:
  struct Child {
    std::string handle;
    int pid = 0;
    std::string start_token;
    bool ours = false;  // our child: waitpid; else (adopted) poll /proc
  };
  std::filesystem::path worker_;
  double heartbeat_s_ = 0;
  std::vector<Child> children_;
};

// "local:PID:START" for a process, and back.
std::string local_handle(int pid, const std::string& start_token);
bool parse_local_handle(const std::string& handle, int* pid, std::string* start_token);

// The start time of `pid` from /proc (clock ticks since boot), "" if gone.
std::string process_start_token(int pid);

}  // namespace qjobs::server
