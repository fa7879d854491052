// The job-directory protocol: the only channel between a worker and whoever
// watches it (the server, a person with `cat`). Layout:
//   spec.yaml spec.json   what was submitted and its normalized form
//   status.json           JobStatus, replaced atomically (write + fsync + rename)
//   events.jsonl          one JSON object per line, appended with O_APPEND
//   logs/worker.log       the worker's log
//   model/ eval/ report.json report.md
//
// status.json fields (all written on every update):
//   state       "RUNNING" while working; "SUCCEEDED" or "FAILED" as the last write
//   stage       current stage name; stages: all stage names in order
//   stage_index 0-based index of stage in stages
//   done,total  progress units of the current stage (total 0 = unknown)
//   eta_s       seconds left in the job by the worker's estimate, -1 = unknown
//   metrics     object of named numbers reported so far
//   error_type, error   set with state FAILED
//   attempt, pid, updated_at (unix seconds)
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

// status.json as read back by whoever watches a worker. The file is
// untrusted input (anyone who can write the job directory can write it), so
// it is parsed field by field with its type checked; see parse_worker_status.
struct WorkerStatus {
  std::string state;  // RUNNING | SUCCEEDED | FAILED
  std::string stage;
  std::vector<std::string> stages;
  int stage_index = -1;
  int64_t done = 0, total = 0;                        // total 0 = unknown
  double eta_s = -1;                                  // -1 = unknown
  nlohmann::json metrics = nlohmann::json::object();  // depth <= 4
  std::string error_type, error;                      // with state FAILED; error at most 4 KiB
  int attempt = 0;
  int pid = 0;
  double updated_at = 0;
};

// The largest status.json read back; a bigger file is refused unread.
inline constexpr std::size_t kMaxStatusBytes = 1 << 20;

// Files of a job directory are untrusted input: anyone who can write the
// folder can plant a symlink, a FIFO, a device or a huge file there. Every
// read the server makes of one goes through these.
//
// open_job_file: opens `rel` ('/'-separated, no "..", no empty or "." part)
// under `root`, each folder on the way and the file itself without following
// a symlink, and only when the file is regular (a FIFO or device is never
// opened for reading, so it cannot block or flood the reader). Returns an
// O_RDONLY|O_CLOEXEC descriptor the caller closes, or -1 with errno set
// (ENOENT absent, ELOOP/ENOTDIR a symlink, EINVAL not a regular file or a bad
// `rel`).
int open_job_file(const std::filesystem::path& root, std::string_view rel);

// The whole of `rel` under `root` through open_job_file, at most `max_bytes`.
// nullopt with *problem empty: absent; with *problem set: refused (a link,
// not a regular file, larger than max_bytes, unreadable).
std::optional<std::string> read_job_file(const std::filesystem::path& root, std::string_view rel, std::size_t max_bytes,
                                         std::string* problem);

// The nesting depth of the JSON text (arrays and objects, strings skipped),
// by one linear scan that stops once it passes `limit`: a cheap check before
// any value is built, so no parse, copy, dump or destructor ever recurses
// deeper than the limit on hostile input.
int json_text_depth(std::string_view text, int limit);

// JSON from a job directory: depth at most `max_depth`, else nullopt with
// *problem set (as for invalid JSON). Never throws.
std::optional<nlohmann::json> parse_job_json(std::string_view text, int max_depth, std::string* problem);

// Parses status.json text. Returns the status, or nullopt with *problem
// saying which field is wrong ("'attempt' must be an integer, got \"1\"").
// Never throws.
std::optional<WorkerStatus> parse_worker_status(std::string_view text, std::string* problem);

class JobDir {
 public:
  explicit JobDir(std::filesystem::path root) : root_(std::move(root)) {}

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path spec_yaml() const { return root_ / "spec.yaml"; }
  std::filesystem::path spec_json() const { return root_ / "spec.json"; }
  std::filesystem::path status() const { return root_ / "status.json"; }
  std::filesystem::path events() const { return root_ / "events.jsonl"; }
  std::filesystem::path logs_dir() const { return root_ / "logs"; }
  std::filesystem::path worker_log() const { return root_ / "logs" / "worker.log"; }
  std::filesystem::path worker_stdio() const { return root_ / "logs" / "worker.stdio.log"; }
  std::filesystem::path model_dir() const { return root_ / "model"; }
  std::filesystem::path eval_dir() const { return root_ / "eval"; }
  std::filesystem::path report_json() const { return root_ / "report.json"; }
  std::filesystem::path report_md() const { return root_ / "report.md"; }

  // Creates the folders a worker writes into. Throws Error(io).
  void create_layout() const;

  // status.json as raw JSON, or nullopt when absent or not a JSON object (a
  // reader may race a rename on file systems without atomic rename; callers
  // retry later). For tools and tests; servers use read_worker_status.
  std::optional<nlohmann::json> read_status() const;
  // status.json validated. nullopt with *problem empty: absent; with
  // *problem set: present but invalid (too large, not JSON, a wrong type).
  std::optional<WorkerStatus> read_worker_status(std::string* problem) const;
  void write_status(const nlohmann::json& status) const;  // atomic replace

  // Appends `event` with a "ts" field added (unix seconds) as one line.
  void append_event(nlohmann::json event) const;

 private:
  std::filesystem::path root_;
};

// Writes `content` to `path` through a temporary file in the same folder,
// fsync and rename: readers see the old or the new file, never a torn one.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

std::string read_file(const std::filesystem::path& path);  // throws Error(io)

double unix_now();  // seconds since the epoch, sub-second precision

}  // namespace qjobs
