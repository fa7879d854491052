// The job store: SQLite in WAL mode with a busy timeout, schema versioned by
// PRAGMA user_version with forward-only migrations (store.cpp, kMigrations).
//
// Schema (version 1):
//   jobs(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, name, algorithm,
//        model, state, priority, attempts, max_attempts, devices_requested,
//        devices, pid, pid_start, timeout_s, error_type, error,
//        idempotency_key TEXT UNIQUE, spec_yaml, spec_json, created_at,
//        started_at, finished_at, updated_at, cancel_requested_at, stage,
//        metrics_json)
//   job_events(id INTEGER PRIMARY KEY AUTOINCREMENT, job_id, ts, type, data_json)
//
// Schema version 2 adds jobs.not_before (unix seconds; a QUEUED job does not
// start before it: the pause after a full disk).
//
// Schema version 3 adds jobs.handle: the dispatcher's name for the current
// (or last) attempt ("local:PID:START", "slurm:JOBID@CLUSTER"), replacing
// pid and pid_start. A QUEUED job with a handle was dispatched to a backend
// that queues (Slurm) and has not started there yet.
//
// Every state change is one UPDATE guarded by the expected old state; the
// methods return false when the guard did not hold (someone else won).
//
// Failures: a statement that cannot run throws Error with kind no_space
// (SQLITE_FULL), io (read-only database, I/O error, busy past the timeout)
// or conflict (a constraint), with SQLite's own message; a failed COMMIT is
// reported as itself, never as the ROLLBACK that follows it. Every write
// updates health(), which the server reports in /healthz and /metrics.
//
// Thread safety: every method may be called from any thread. Writes are
// serialized on one connection; reads use a pool of their own connections,
// so they never wait behind a write's fsync (WAL lets them run alongside).
// The pool holds one connection per thread that ever read at once; each
// connection's page cache is capped at 1 MiB.
//
// Group commit: concurrent insert() calls share one transaction and one
// fsync. The first caller to find no commit in progress takes every insert
// waiting at that moment and commits them together; the others wait for
// it, and none returns before its row is durable. One insert that fails (a
// constraint) fails alone; a commit that fails fails every insert in it.
//
// Job records are kept in memory once read (at most kCachedRecords or
// kCachedBytes of specs): every write of a job drops its record before the
// write returns, and a read that began before a write never stores what it
// read, so get() after a write sees that write. This process must be the
// database's only writer (the server holds user_data's lock).
#pragma once

#include <condition_variable>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/job_state.hpp"
#include "server/job_record.hpp"

struct sqlite3;

namespace qjobs::server {

struct NewJob {
  std::string id;
  std::string name;
  std::string algorithm;
  std::string model;
  int priority = 0;
  int max_attempts = 2;
  int devices_requested = 1;
  double timeout_s = 0;
  std::optional<std::string> idempotency_key;
  std::string spec_yaml;
  std::string spec_json;
  // Events stored with the row after its QUEUED event: (type, data).
  std::vector<std::pair<std::string, nlohmann::json>> events;
};

struct FinishInfo {
  JobState to = JobState::succeeded;  // SUCCEEDED, FAILED or CANCELLED
  ErrorType error_type = ErrorType::none;
  std::string error;
  std::string stage;
  nlohmann::json metrics = nlohmann::json::object();
};

// Whether the last write went through, and what the last failure was.
struct StoreHealth {
  bool writable = true;
  std::string last_error;     // message of the last failed write, "" if none yet
  double failing_since = 0;   // unix seconds of the first failure of the current run, 0 when writable
  uint64_t write_errors = 0;  // failed writes since start
};

class Store {
 public:
  // Opens (creating when absent) and migrates the database at `path`.
  // Throws Error(io) or Error(data_corruption) for a database newer than
  // this build.
  // `vfs`: SQLite VFS name to open with (nullptr: the default one); tests
  // pass the fault-injecting one of store_faults.hpp.
  explicit Store(const std::filesystem::path& path, const char* vfs = nullptr);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int schema_version();  // the version this build migrates to

  // Inserts a QUEUED job and its first event in one transaction. When the idempotency key is already used, nothing
  // is inserted and the first job is returned with created = false.
  struct InsertResult {
    JobRecord job;
    bool created = false;
  };
  InsertResult insert(const NewJob& job);

  std::optional<JobRecord> get(const std::string& id);
  // The record when it is in memory; never reads the database.
  std::optional<JobRecord> peek(const std::string& id) const;
  // The job with this id or, failing that, the newest job with this name.
  std::optional<JobRecord> find(const std::string& id_or_name);
  // Newest first; `before_seq` continues a page (the previous last seq).
  // `states`: only jobs in one of them (empty: every state); `name`: only
  // jobs of that name (JOB_ID).
  std::vector<JobRecord> list(const std::vector<JobState>& states, int limit, std::optional<int64_t> before_seq,
                              const std::optional<std::string>& name = std::nullopt);
  std::vector<JobRecord> list(std::optional<JobState> state, int limit, std::optional<int64_t> before_seq,
                              const std::optional<std::string>& name = std::nullopt) {
    return list(state ? std::vector<JobState>{*state} : std::vector<JobState>{}, limit, before_seq, name);
  }
  // All jobs in `state`, by priority (high first) then seq (old first).
  std::vector<JobRecord> in_state(JobState state);
  std::map<JobState, int64_t> count_by_state();
  // Sum and count of (finished_at - created_at) of terminal jobs, by state.
  std::map<JobState, std::pair<double, int64_t>> durations();

  // QUEUED (not dispatched) -> RUNNING, attempts + 1, with the attempt's
  // handle and devices recorded.
  bool start(const std::string& id, const std::string& handle, const std::string& devices, double now);
  // QUEUED (not dispatched) -> QUEUED with `handle`, attempts + 1: handed to
  // a backend that queues it; `stage` says so ("pending in Slurm").
  bool dispatch(const std::string& id, const std::string& handle, const std::string& stage, double now);
  // QUEUED with `handle` -> RUNNING: the backend started it.
  bool mark_running(const std::string& id, const std::string& handle, double now);
  // RUNNING|CANCELLING (`from`) -> terminal.
  bool finish(const std::string& id, JobState from, const FinishInfo& info, double now);
  // `from` -> QUEUED, keeping attempts, clearing the handle, for a lost worker with attempts left;
  // the job does not start again before `not_before` (unix seconds, 0 = now).
  bool requeue(const std::string& id, JobState from, const std::string& why, double now, double not_before = 0);
  // QUEUED (not dispatched) -> CANCELLED directly, or RUNNING (or QUEUED
  // and dispatched) -> CANCELLING.
  bool cancel_queued(const std::string& id, double now);
  bool cancel_running(const std::string& id, double now);
  void set_stage(const std::string& id, const std::string& stage, const nlohmann::json& metrics);
  // Deletes a terminal job and its events; false when it is not terminal.
  bool remove(const std::string& id);

  void add_event(const std::string& id, const std::string& type, const nlohmann::json& data);
  // The job's stored events, oldest first, as events.jsonl lines: the data
  // with its "type" and "ts" (at most `limit`).
  std::vector<nlohmann::json> events(const std::string& id, int limit = 10000);
  // Ids of every job row, for the start-up sweep of orphan folders.
  std::vector<std::string> all_ids();

  // A one-row write that tells whether the database takes writes again.
  // Returns the new health; never throws.
  StoreHealth probe_write();
  StoreHealth health() const;
  // Inserts stored and the commits that stored them (group commit: fewer
  // commits than inserts under concurrent submissions), and inserts waiting
  // for a commit now (beside the group being committed).
  struct InsertStats {
    uint64_t inserts = 0;
    uint64_t commits = 0;
    std::size_t waiting = 0;
    bool committing = false;  // a group is being committed now
  };
  InsertStats insert_stats() const;
  // Bytes SQLite holds in this process (page caches of every connection,
  // statements), as sqlite3_memory_used() counts them.
  static int64_t memory_used();

 private:
  class Reader;  // a pooled read connection, returned on destruction
  sqlite3* open_connection() const;
  void exec(const std::string& sql);
  void migrate();
  // Runs `f` on the write connection under the write lock and records the
  // outcome in health_.
  template <typename F>
  auto write(F&& f) -> decltype(f());
  // write() for a statement that changes job `id`: drops its cached
  // record once the write is over, committed or not.
  template <typename F>
  auto write_job(const std::string& id, F&& f) -> decltype(f());
  void record_write(bool ok, const std::string& error);

  // One insert waiting in a group (insert()).
  struct PendingInsert {
    const NewJob* job = nullptr;
    std::optional<InsertResult> result;
    std::exception_ptr error;
    bool done = false;
  };
  // Stores `group` in one transaction; sets each one's result or error.
  void commit_group(const std::vector<PendingInsert*>& group);
  // Inserts one job inside the open transaction (a savepoint of its own).
  InsertResult insert_one(const NewJob& j, double now);

  void remember(const JobRecord& r, uint64_t epoch);
  void forget(const std::string& id);

  std::filesystem::path path_;
  const char* vfs_ = nullptr;
  sqlite3* db_ = nullptr;  // the write connection; guarded by write_mu_
  mutable std::mutex write_mu_;
  mutable std::mutex readers_mu_;
  mutable std::vector<sqlite3*> readers_;  // idle read connections
  mutable std::mutex health_mu_;
  StoreHealth health_;

  mutable std::mutex group_mu_;
  std::condition_variable group_cv_;
  std::vector<PendingInsert*> group_;  // inserts waiting for the next commit
  bool committing_ = false;            // a caller is committing a group
  uint64_t inserts_ = 0, commits_ = 0;

  mutable std::mutex cache_mu_;
  std::unordered_map<std::string, JobRecord> cache_;
  std::size_t cache_bytes_ = 0;  // spec text held by cache_
  uint64_t cache_epoch_ = 0;     // bumped by forget(): reads begun before it do not fill the cache
};

}  // namespace qjobs::server
