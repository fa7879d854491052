// Runs an external command (Slurm's sbatch, squeue, sacct, scancel) to its
// end with a deadline, its stdin fed from a string and its output captured,
// and without leaking the server's descriptors into it. Written here because
// the scheduler must never block past the deadline and must wait for only
// this child (Boost.Process 1.81's wait_for and its SIGCHLD handling fit
// neither); it is posix_spawn, poll and waitpid.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace qjobs::server {

struct CommandResult {
  int exit_code = -1;        // -1 when it did not exit normally
  int signal = 0;            // the signal that ended it, 0 if none
  bool timed_out = false;    // killed at the deadline
  bool not_started = false;  // the program could not be run (missing)
  std::string out;           // stdout, at most `max_output` bytes
  std::string err;           // stderr, at most `max_output` bytes
  bool ok() const { return exit_code == 0; }
  // One line for logs and events: the first line of stderr, or how it ended.
  std::string summary() const;
};

struct CommandOptions {
  std::string input;                       // written to its stdin
  double timeout_s = 20;                   // then SIGKILL
  std::size_t max_output = 4 << 20;        // bytes kept of each stream
  std::map<std::string, std::string> env;  // added to (replacing in) the environment
};

// argv[0] is looked up in PATH. Never throws.
CommandResult run_command(const std::vector<std::string>& argv, const CommandOptions& options = {});

}  // namespace qjobs::server
