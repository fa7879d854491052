// The Slurm backend: each attempt is one Slurm batch job that execs
// `qjobs-worker run SPEC --job-dir DIR` on a node. qjobs submits, watches and
// cancels; Slurm places and queues.
//
//   submit: sbatch --parsable --job-name=<qjobs id> --comment="qjobs attempt N"
//           --output=DIR/logs/slurm-%j.out --no-requeue --time=<TIMEOUT_S in
//           minutes> --nice=<100 - PRIORITY> [--partition --account --qos
//           --gres=gpu:N] [--slurm-extra words], the batch script on stdin
//   watch:  at most one squeue per poll interval for every watched job, then
//           one sacct for those that left the queue (their final state, exit
//           code and who cancelled them); without accounting, squeue's state
//   cancel: scancel JOBID (Slurm sends SIGTERM, then SIGKILL after KillWait);
//           SIGKILL: scancel --signal=KILL --full JOBID, then scancel JOBID
//
// Slurm states: PENDING/CONFIGURING/SUSPENDED are "pending"; RUNNING and
// COMPLETING are "running"; COMPLETED and FAILED end as `exited` (the
// worker's status.json decides); NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY,
// PREEMPTED, DEADLINE and REQUEUED end as `lost`; TIMEOUT as `timeout`;
// CANCELLED as `cancelled`, with the user sacct names.
//
// The job directories must be on a file system that the nodes share, at the
// same path (the server's --user-data), and the worker binary must exist at
// the same path on every node.
#pragma once

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/logging.hpp"
#include "server/command.hpp"
#include "server/dispatcher.hpp"

namespace qjobs::server {

struct SlurmOptions {
  std::filesystem::path worker;         // qjobs-worker, at this path on every node
  std::string partition, account, qos;  // "" = Slurm's default
  std::string extra;                    // more sbatch arguments, split as a shell would (no substitution)
  std::string gres;                     // "gpu": a job's device count becomes --gres=gpu:N; "" none
  double poll_s = 2;                    // at most one squeue per this many seconds
  double command_timeout_s = 20;        // any Slurm command is killed after this
  double heartbeat_s = 0;               // exported as QJOBS_HEARTBEAT_S
};

// Counters for /metrics.
struct SlurmStats {
  std::atomic<uint64_t> sbatch{0}, squeue{0}, sacct{0}, scancel{0}, failures{0};
  std::atomic<bool> reachable{true};
};

class SlurmDispatcher final : public Dispatcher {
 public:
  // Throws Error(invalid_input) for --slurm-extra that does not split.
  explicit SlurmDispatcher(SlurmOptions options);
  std::string backend() const override { return "slurm"; }
  std::string launch(const LaunchRequest& req) override;
  bool transient() const override { return last_transient_; }
  void signal(const std::string& handle, int sig) override;
  void watch(const std::string& handle) override;
  std::vector<AttemptUpdate> poll() override;
  std::vector<UnrecordedAttempt> unrecorded() override;
  bool queues() const override { return true; }
  std::string metrics() const override;

  // Asks Slurm whether it would take a job with these options (sbatch
  // --test-only: nothing is submitted). Returns Slurm's refusal (a wrong
  // partition, account, QOS or gres), or "" when it would, or when Slurm did
  // not answer (then the first submission tells).
  std::string check();
  const SlurmStats& stats() const { return stats_; }
  // The sbatch arguments for `req` (without the script), for tests and logs.
  std::vector<std::string> sbatch_args(const LaunchRequest& req) const;
  // The batch script for `req`.
  std::string batch_script(const LaunchRequest& req) const;

 private:
  struct Tracked {
    std::string job;         // Slurm job id
    std::string last_state;  // as last reported, "" before the first poll
    std::string last_stage;
    int unknown_polls = 0;    // polls in which neither squeue nor sacct knew it
    int unsettled_polls = 0;  // polls in which squeue said ended but sacct did not yet
  };
  CommandResult run(const std::string& tool, const std::vector<std::string>& args, const std::string& input = "");
  std::string cluster();

  SlurmOptions options_;
  std::vector<std::string> extra_;
  std::string cluster_;
  bool cluster_known_ = false;
  bool last_transient_ = false;
  double next_poll_ = 0;
  std::map<std::string, Tracked> tracked_;  // by handle
  SlurmStats stats_;
  LogLimiter log_{10};
};

// "slurm:JOBID@CLUSTER" (or "slurm:JOBID") and back.
std::string slurm_handle(const std::string& job, const std::string& cluster);
bool parse_slurm_handle(const std::string& handle, std::string* job, std::string* cluster);

// What a Slurm state (as sacct or squeue print it, e.g. "CANCELLED by 1000")
// means for an attempt. Exposed for tests.
AttemptUpdate slurm_state_update(const std::string& state, const std::string& reason, const std::string& exit_code);

}  // namespace qjobs::server
