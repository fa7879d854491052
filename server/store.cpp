#include "server/store.hpp"

#include "common/job_id.hpp"

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <type_traits>

#include "common/error.hpp"

namespace qjobs::server {
namespace {

// Forward-only migrations; entry i moves the schema from version i to i + 1.
const std::array<const char*, 4> kMigrations = {
    R"sql(
CREATE TABLE jobs(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL DEFAULT '',
  algorithm TEXT NOT NULL,
  model TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 2,
  devices_requested INTEGER NOT NULL DEFAULT 1,
  devices TEXT NOT NULL DEFAULT '',
  pid INTEGER,
  pid_start TEXT NOT NULL DEFAULT '',
  timeout_s REAL NOT NULL DEFAULT 0,
  error_type TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT UNIQUE,
  spec_yaml TEXT NOT NULL,
  spec_json TEXT NOT NULL,
  created_at REAL NOT NULL,
  started_at REAL,
  finished_at REAL,
  updated_at REAL NOT NULL,
  cancel_requested_at REAL,
  stage TEXT NOT NULL DEFAULT '',
  metrics_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_state ON jobs(state, priority DESC, seq);
CREATE TABLE job_events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  ts REAL NOT NULL,
  type TEXT NOT NULL,
  data_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX job_events_job ON job_events(job_id, id);
)sql",
    R"sql(
ALTER TABLE jobs ADD COLUMN not_before REAL;
CREATE TABLE server_state(key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql",
    // 3: the dispatcher's opaque handle replaces pid + pid_start (kept, no
    // longer written); a local worker's becomes "local:PID:START".
    R"sql(
ALTER TABLE jobs ADD COLUMN handle TEXT NOT NULL DEFAULT '';
UPDATE jobs SET handle='local:' || pid || ':' || pid_start WHERE pid IS NOT NULL;
)sql",
    // 4: jobs are also found by name (Nyuntam's JOB_ID), newest first.
    R"sql(
CREATE INDEX IF NOT EXISTS jobs_name ON jobs(name, seq DESC);
)sql",
};

const char* kColumns =
    "seq, id, name, algorithm, model, state, priority, attempts, max_attempts, devices_requested, "
    "devices, pid, pid_start, timeout_s, error_type, error, idempotency_key, spec_yaml, spec_json, "
    "created_at, started_at, finished_at, updated_at, cancel_requested_at, stage, metrics_json, not_before, handle";

// Throws the Error for a failed SQLite call: no_space for a full disk,
// conflict for a constraint, io for everything else (read-only, I/O error,
// busy), with SQLite's message and the name of the result code.
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, const std::string& what) {
  const int primary = rc & 0xff;
  const std::string msg = std::string("sqlite") + (what.empty() ? "" : " " + what) + ": " +
                          (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (" + sqlite3_errstr(rc) + ")";
  if (primary == SQLITE_CONSTRAINT) throw Error(ErrorKind::conflict, msg);
  if (primary == SQLITE_FULL) throw Error(ErrorKind::no_space, msg);
  throw Error(ErrorKind::io, msg);
}

// A prepared statement; binds by 1-based position.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    if (const int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr); rc != SQLITE_OK) {
      // A statement of ours that does not compile is a bug; anything else
      // (I/O reading the schema, a locked or corrupt file) is the store's.
      if ((rc & 0xff) == SQLITE_ERROR)
        throw Error(ErrorKind::internal, std::string("sqlite prepare: ") + sqlite3_errmsg(db));
      throw_sqlite(db, rc, "prepare");
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, const char* v) { return bind(i, std::string(v)); }
  Stmt& bind(int i, std::string_view v) { return bind(i, std::string(v)); }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  template <typename T>
  Stmt& bind(int i, const std::optional<T>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }

  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw_sqlite(db_, rc, "");
  }
  int changes() const { return sqlite3_changes(db_); }

  std::string text(int c) const {
    const auto* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, c)) : "";
  }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double real(int c) const { return sqlite3_column_double(s_, c); }
  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

JobRecord read_row(const Stmt& s) {
  JobRecord r;
  r.seq = s.i64(0);
  r.id = s.text(1);
  r.name = s.text(2);
  r.algorithm = s.text(3);
  r.model = s.text(4);
  r.state = parse_job_state(s.text(5)).value_or(JobState::failed);
  r.priority = static_cast<int>(s.i64(6));
  r.attempts = static_cast<int>(s.i64(7));
  r.max_attempts = static_cast<int>(s.i64(8));
  r.devices_requested = static_cast<int>(s.i64(9));
  r.devices = s.text(10);
  r.timeout_s = s.real(13);
  r.error_type = parse_error_type(s.text(14)).value_or(ErrorType::internal);
  r.error = s.text(15);
  if (!s.null(16)) r.idempotency_key = s.text(16);
  r.spec_yaml = s.text(17);
  r.spec_json = s.text(18);
  r.created_at = s.real(19);
  if (!s.null(20)) r.started_at = s.real(20);
  if (!s.null(21)) r.finished_at = s.real(21);
  r.updated_at = s.real(22);
  if (!s.null(23)) r.cancel_requested_at = s.real(23);
  r.stage = s.text(24);
  r.metrics = nlohmann::json::parse(s.text(25), nullptr, false);
  if (r.metrics.is_discarded()) r.metrics = nlohmann::json::object();
  if (!s.null(26)) r.not_before = s.real(26);
  r.handle = s.text(27);
  return r;
}

std::string state_name(JobState s) { return std::string(job_state_name(s)); }

}  // namespace

nlohmann::json to_json(const JobRecord& r) {
  nlohmann::json j = {
      {"id", r.id},
      {"name", r.name},
      {"algorithm", r.algorithm},
      {"model", r.model},
      {"state", job_state_name(r.state)},
      {"priority", r.priority},
      {"attempts", r.attempts},
      {"max_attempts", r.max_attempts},
      {"devices_requested", r.devices_requested},
      {"devices", r.devices},
      {"timeout_s", r.timeout_s},
      {"created_at", r.created_at},
      {"updated_at", r.updated_at},
      {"stage", r.stage},
      {"metrics", r.metrics},
  };
  j["started_at"] = r.started_at ? nlohmann::json(*r.started_at) : nlohmann::json(nullptr);
  j["finished_at"] = r.finished_at ? nlohmann::json(*r.finished_at) : nlohmann::json(nullptr);
  j["error_type"] =
      r.error_type == ErrorType::none ? nlohmann::json(nullptr) : nlohmann::json(error_type_name(r.error_type));
  j["error"] = r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error);
  j["handle"] = r.handle.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.handle);
  j["backend"] = r.handle.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.handle.substr(0, r.handle.find(':')));
  return j;
}

sqlite3* Store::open_connection() const {
  sqlite3* db = nullptr;
  if (const int rc =
          sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, vfs_);
      rc != SQLITE_OK) {
    const std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    throw Error(ErrorKind::io, "cannot open database " + path_.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_extended_result_codes(db, 1);
  // A bounded page cache per connection (SQLite's default is 2 MiB each):
  // the server's memory stays flat as the database grows.
  sqlite3_exec(db, "PRAGMA cache_size=-1024", nullptr, nullptr, nullptr);
  return db;
}

Store::Store(const std::filesystem::path& path, const char* vfs) : path_(path), vfs_(vfs) {
  db_ = open_connection();
  try {
    exec("PRAGMA journal_mode=WAL");
    // FULL: a job acknowledged with 201 survives a power loss, not only a crash.
    exec("PRAGMA synchronous=FULL");
    exec("PRAGMA foreign_keys=ON");
    migrate();
  } catch (...) {
    sqlite3_close(db_);
    throw;
  }
}

Store::~Store() {
  for (auto* r : readers_) sqlite3_close(r);
  sqlite3_close(db_);
}

int Store::schema_version() { return static_cast<int>(kMigrations.size()); }

// A read connection checked out of the pool for one method call.
class Store::Reader {
 public:
  explicit Reader(const Store& s) : store_(s) {
    {
      std::lock_guard lock(s.readers_mu_);
      if (!s.readers_.empty()) {
        db_ = s.readers_.back();
        s.readers_.pop_back();
      }
    }
    if (db_ == nullptr) db_ = s.open_connection();
  }
  ~Reader() {
    std::lock_guard lock(store_.readers_mu_);
    store_.readers_.push_back(db_);
  }
  sqlite3* get() const { return db_; }

 private:
  const Store& store_;
  sqlite3* db_ = nullptr;
};

void Store::exec(const std::string& sql) {
  char* err = nullptr;
  if (const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
    sqlite3_free(err);
    throw_sqlite(db_, rc, "");
  }
}

namespace {
// Ends a failed transaction without hiding why it failed: SQLite may have
// rolled back already (a failed COMMIT on a full disk does), and a ROLLBACK
// then would only say "no transaction is active".
void rollback_quietly(sqlite3* db) {
  if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
}
}  // namespace

void Store::record_write(bool ok, const std::string& error) {
  std::lock_guard lock(health_mu_);
  if (ok) {
    health_.writable = true;
    health_.failing_since = 0;
    return;
  }
  if (health_.writable)
    health_.failing_since = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  health_.writable = false;
  health_.last_error = error;
  ++health_.write_errors;
}

template <typename F>
auto Store::write(F&& f) -> decltype(f()) {
  std::lock_guard lock(write_mu_);
  try {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      record_write(true, "");
    } else {
      auto r = f();
      record_write(true, "");
      return r;
    }
  } catch (const Error& e) {
    // A constraint is the caller's conflict, not a store failure.
    record_write(e.kind() == ErrorKind::conflict, e.what());
    throw;
  }
}

template <typename F>
auto Store::write_job(const std::string& id, F&& f) -> decltype(f()) {
  struct Forget {
    Store* store;
    const std::string& id;
    ~Forget() { store->forget(id); }
  } forget_after{this, id};
  return write(std::forward<F>(f));
}

int64_t Store::memory_used() { return sqlite3_memory_used(); }

StoreHealth Store::health() const {
  std::lock_guard lock(health_mu_);
  return health_;
}

StoreHealth Store::probe_write() {
  try {
    write([&] {
      Stmt s(db_,
             "INSERT INTO server_state(key, value) VALUES('probe', ?) "
             "ON CONFLICT(key) DO UPDATE SET value=excluded.value");
      s.bind(1, std::to_string(std::chrono::system_clock::now().time_since_epoch().count()));
      s.step();
    });
  } catch (const std::exception&) {
  }
  return health();
}

void Store::migrate() {
  int version = 0;
  {
    Stmt s(db_, "PRAGMA user_version");
    if (s.step()) version = static_cast<int>(s.i64(0));
  }
  if (version > schema_version())
    throw Error(ErrorKind::data_corruption, "database schema version " + std::to_string(version) +
                                                " is newer than this build (" + std::to_string(schema_version()) +
                                                "); refusing to touch it");
  for (int v = version; v < schema_version(); ++v) {
    exec("BEGIN IMMEDIATE");
    try {
      exec(kMigrations[static_cast<std::size_t>(v)]);
      exec("PRAGMA user_version=" + std::to_string(v + 1));
      exec("COMMIT");
    } catch (...) {
      rollback_quietly(db_);
      throw;
    }
  }
}

Store::InsertResult Store::insert(const NewJob& j) {
  PendingInsert me;
  me.job = &j;
  std::unique_lock lock(group_mu_);
  group_.push_back(&me);
  while (!me.done) {
    if (committing_) {
      group_cv_.wait(lock);
      continue;
    }
    // No commit in progress: this caller commits every insert waiting now
    // (its own among them).
    committing_ = true;
    std::vector<PendingInsert*> group;
    group.swap(group_);
    lock.unlock();
    commit_group(group);
    lock.lock();
    for (auto* p : group) p->done = true;
    committing_ = false;
    group_cv_.notify_all();
  }
  if (me.error) std::rethrow_exception(me.error);
  return std::move(*me.result);
}

Store::InsertStats Store::insert_stats() const {
  std::lock_guard lock(group_mu_);
  return {inserts_, commits_, group_.size(), committing_};
}

void Store::commit_group(const std::vector<PendingInsert*>& group) {
  uint64_t epoch = 0;
  {
    std::lock_guard lock(cache_mu_);
    epoch = cache_epoch_;
  }
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  try {
    write([&] {
      exec("BEGIN IMMEDIATE");
      try {
        for (auto* p : group) {
          try {
            p->result = insert_one(*p->job, now);
          } catch (const Error& e) {
            if (e.kind() != ErrorKind::conflict) throw;  // the transaction is gone
            p->error = std::current_exception();
          }
        }
        exec("COMMIT");
      } catch (...) {
        rollback_quietly(db_);
        throw;
      }
    });
  } catch (...) {
    for (auto* p : group) {
      p->result.reset();
      p->error = std::current_exception();
    }
    return;
  }
  for (auto* p : group)
    if (p->result && p->result->created) remember(p->result->job, epoch);  // its submitter reads it next
  std::lock_guard lock(group_mu_);
  ++commits_;
  for (auto* p : group)
    if (p->result && p->result->created) ++inserts_;
}

Store::InsertResult Store::insert_one(const NewJob& j, double now) {
  const auto by_key = [&]() -> std::optional<JobRecord> {
    if (!j.idempotency_key) return std::nullopt;
    Stmt s(db_, std::string("SELECT ") + kColumns + " FROM jobs WHERE idempotency_key=?");
    s.bind(1, *j.idempotency_key);
    if (!s.step()) return std::nullopt;
    return read_row(s);
  };
  // Earlier inserts of this group are visible here: a key used twice in one
  // group returns the first job to the second caller.
  if (auto first = by_key()) return {std::move(*first), false};
  exec("SAVEPOINT one_job");
  try {
    Stmt s(db_,
           "INSERT INTO jobs(id, name, algorithm, model, state, priority, max_attempts, "
           "devices_requested, timeout_s, idempotency_key, spec_yaml, spec_json, created_at, "
           "updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    s.bind(1, j.id)
        .bind(2, j.name)
        .bind(3, j.algorithm)
        .bind(4, j.model)
        .bind(5, state_name(JobState::queued))
        .bind(6, j.priority)
        .bind(7, j.max_attempts)
        .bind(8, j.devices_requested)
        .bind(9, j.timeout_s)
        .bind(10, j.idempotency_key)
        .bind(11, j.spec_yaml)
        .bind(12, j.spec_json)
        .bind(13, now)
        .bind(14, now);
    s.step();
    Stmt e(db_, "INSERT INTO job_events(job_id, ts, type, data_json) VALUES(?,?,'state',?)");
    e.bind(1, j.id).bind(2, now).bind(3, std::string(R"({"state":"QUEUED","source":"server"})"));
    e.step();
    for (const auto& [type, data] : j.events) {
      Stmt more(db_, "INSERT INTO job_events(job_id, ts, type, data_json) VALUES(?,?,?,?)");
      more.bind(1, j.id).bind(2, now).bind(3, type).bind(4, data.dump());
      more.step();
    }
    exec("RELEASE one_job");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK TO one_job; RELEASE one_job", nullptr, nullptr, nullptr);
    throw;
  }
  Stmt s(db_, std::string("SELECT ") + kColumns + " FROM jobs WHERE id=?");
  s.bind(1, j.id);
  if (!s.step()) throw Error(ErrorKind::internal, "inserted job " + j.id + " is not there");
  return {read_row(s), true};
}

std::optional<JobRecord> Store::get(const std::string& id) {
  uint64_t epoch = 0;
  {
    std::lock_guard lock(cache_mu_);
    if (const auto it = cache_.find(id); it != cache_.end()) return it->second;
    epoch = cache_epoch_;
  }
  std::optional<JobRecord> rec;
  {
    const Reader r(*this);
    Stmt s(r.get(), std::string("SELECT ") + kColumns + " FROM jobs WHERE id=?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    rec = read_row(s);
  }
  remember(*rec, epoch);
  return rec;
}

std::optional<JobRecord> Store::peek(const std::string& id) const {
  std::lock_guard lock(cache_mu_);
  if (const auto it = cache_.find(id); it != cache_.end()) return it->second;
  return std::nullopt;
}

namespace {
constexpr std::size_t kCachedRecords = 4096;
constexpr std::size_t kCachedBytes = 32u << 20;
std::size_t spec_bytes(const JobRecord& r) { return r.spec_yaml.size() + r.spec_json.size(); }
}  // namespace

void Store::remember(const JobRecord& r, uint64_t epoch) {
  std::lock_guard lock(cache_mu_);
  if (epoch != cache_epoch_ || cache_.count(r.id)) return;  // a write came between: what was read may be old
  const std::size_t bytes = spec_bytes(r);
  if (bytes > kCachedBytes / 16) return;
  while (!cache_.empty() && (cache_.size() >= kCachedRecords || cache_bytes_ + bytes > kCachedBytes)) {
    cache_bytes_ -= spec_bytes(cache_.begin()->second);
    cache_.erase(cache_.begin());
  }
  cache_.emplace(r.id, r);
  cache_bytes_ += bytes;
}

void Store::forget(const std::string& id) {
  std::lock_guard lock(cache_mu_);
  ++cache_epoch_;
  if (const auto it = cache_.find(id); it != cache_.end()) {
    cache_bytes_ -= spec_bytes(it->second);
    cache_.erase(it);
  }
}

std::optional<JobRecord> Store::find(const std::string& id_or_name) {
  if (auto job = get(id_or_name)) return job;
  // A ref of an id's shape names by id only: a name of that shape is
  // refused at submission, and one stored before that rule is not reachable
  // by it (after DELETE of an id, the same URL must not name another job).
  if (id_or_name.empty() || looks_like_job_id(id_or_name)) return std::nullopt;
  auto named = list(std::nullopt, 1, std::nullopt, id_or_name);
  if (named.empty()) return std::nullopt;
  return std::move(named.front());
}

std::vector<JobRecord> Store::list(const std::vector<JobState>& states, int limit, std::optional<int64_t> before_seq,
                                   const std::optional<std::string>& name) {
  std::string sql = std::string("SELECT ") + kColumns + " FROM jobs WHERE 1=1";
  // ?5, ?6, ...: one parameter per state.
  for (std::size_t i = 0; i < states.size(); ++i)
    sql += (i == 0 ? " AND state IN (?" : ", ?") + std::to_string(5 + i) + (i + 1 == states.size() ? ")" : "");
  if (before_seq) sql += " AND seq<?2";
  if (name) sql += " AND name=?4";
  sql += " ORDER BY seq DESC LIMIT ?3";
  const Reader r(*this);
  Stmt s(r.get(), sql);
  for (std::size_t i = 0; i < states.size(); ++i) s.bind(static_cast<int>(5 + i), state_name(states[i]));
  if (before_seq) s.bind(2, *before_seq);
  s.bind(3, limit);
  if (name) s.bind(4, *name);
  std::vector<JobRecord> out;
  while (s.step()) out.push_back(read_row(s));
  return out;
}

std::vector<JobRecord> Store::in_state(JobState state) {
  const Reader r(*this);
  Stmt s(r.get(), std::string("SELECT ") + kColumns + " FROM jobs WHERE state=? ORDER BY priority DESC, seq ASC");
  s.bind(1, state_name(state));
  std::vector<JobRecord> out;
  while (s.step()) out.push_back(read_row(s));
  return out;
}

std::map<JobState, int64_t> Store::count_by_state() {
  const Reader r(*this);
  Stmt s(r.get(), "SELECT state, COUNT(*) FROM jobs GROUP BY state");
  std::map<JobState, int64_t> out;
  while (s.step())
    if (auto st = parse_job_state(s.text(0))) out[*st] = s.i64(1);
  return out;
}

std::map<JobState, std::pair<double, int64_t>> Store::durations() {
  const Reader r(*this);
  Stmt s(r.get(),
         "SELECT state, SUM(finished_at - created_at), COUNT(*) FROM jobs "
         "WHERE finished_at IS NOT NULL GROUP BY state");
  std::map<JobState, std::pair<double, int64_t>> out;
  while (s.step())
    if (auto st = parse_job_state(s.text(0))) out[*st] = {s.real(1), s.i64(2)};
  return out;
}

bool Store::start(const std::string& id, const std::string& handle, const std::string& devices, double now) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_,
           "UPDATE jobs SET state=?, attempts=attempts+1, handle=?, pid=NULL, devices=?, "
           "started_at=?, updated_at=?, stage='', error_type='', error='', not_before=NULL "
           "WHERE id=? AND state=? AND handle=''");
    s.bind(1, state_name(JobState::running))
        .bind(2, handle)
        .bind(3, devices)
        .bind(4, now)
        .bind(5, now)
        .bind(6, id)
        .bind(7, state_name(JobState::queued));
    s.step();
    return s.changes() == 1;
  });
}

bool Store::dispatch(const std::string& id, const std::string& handle, const std::string& stage, double now) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_,
           "UPDATE jobs SET attempts=attempts+1, handle=?, pid=NULL, devices='', started_at=NULL, updated_at=?, "
           "stage=?, error_type='', error='', not_before=NULL WHERE id=? AND state=? AND handle=''");
    s.bind(1, handle).bind(2, now).bind(3, stage).bind(4, id).bind(5, state_name(JobState::queued));
    s.step();
    return s.changes() == 1;
  });
}

bool Store::mark_running(const std::string& id, const std::string& handle, double now) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_, "UPDATE jobs SET state=?, started_at=?, updated_at=?, stage='' WHERE id=? AND state=? AND handle=?");
    s.bind(1, state_name(JobState::running))
        .bind(2, now)
        .bind(3, now)
        .bind(4, id)
        .bind(5, state_name(JobState::queued))
        .bind(6, handle);
    s.step();
    return s.changes() == 1;
  });
}

bool Store::finish(const std::string& id, JobState from, const FinishInfo& info, double now) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_,
           "UPDATE jobs SET state=?, error_type=?, error=?, stage=CASE WHEN ?='' THEN stage ELSE ? END, "
           "metrics_json=?, finished_at=?, updated_at=?, pid=NULL WHERE id=? AND state=?");
    // The handle stays: it names the attempt in Slurm's accounting.
    s.bind(1, state_name(info.to))
        .bind(2, error_type_name(info.error_type))
        .bind(3, info.error)
        .bind(4, info.stage)
        .bind(5, info.stage)
        .bind(6, info.metrics.dump())
        .bind(7, now)
        .bind(8, now)
        .bind(9, id)
        .bind(10, state_name(from));
    s.step();
    return s.changes() == 1;
  });
}

bool Store::requeue(const std::string& id, JobState from, const std::string& why, double now, double not_before) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_,
           "UPDATE jobs SET state=?, pid=NULL, handle='', devices='', stage='', error=?, updated_at=?, not_before=? "
           "WHERE id=? AND state=?");
    s.bind(1, state_name(JobState::queued)).bind(2, why).bind(3, now).bind(5, id).bind(6, state_name(from));
    if (not_before > 0) s.bind(4, not_before);
    else s.bind_null(4);
    s.step();
    return s.changes() == 1;
  });
}

bool Store::cancel_queued(const std::string& id, double now) {
  return write_job(id, [&]() -> bool {
    Stmt s(db_,
           "UPDATE jobs SET state=?, cancel_requested_at=?, finished_at=?, updated_at=? "
           "WHERE id=? AND state=? AND handle=''");
    s.bind(1, state_name(JobState::cancelled))
        .bind(2, now)
        .bind(3, now)
        .bind(4, now)
        .bind(5, id)
        .bind(6, state_name(JobState::queued));
    s.step();
    return s.changes() == 1;
  });
}

bool Store::cancel_running(const std::string& id, double now) {
  return write_job(id, [&]() -> bool {
    // RUNNING, or QUEUED in a backend's queue (dispatched, with a handle).
    Stmt s(db_,
           "UPDATE jobs SET state=?, cancel_requested_at=?, updated_at=? "
           "WHERE id=? AND (state=? OR (state=? AND handle!=''))");
    s.bind(1, state_name(JobState::cancelling))
        .bind(2, now)
        .bind(3, now)
        .bind(4, id)
        .bind(5, state_name(JobState::running))
        .bind(6, state_name(JobState::queued));
    s.step();
    return s.changes() == 1;
  });
}

void Store::set_stage(const std::string& id, const std::string& stage, const nlohmann::json& metrics) {
  return write_job(id, [&]() {
    Stmt s(db_,
           "UPDATE jobs SET stage=?, metrics_json=? WHERE id=? AND "
           "(state IN ('RUNNING','CANCELLING') OR (state='QUEUED' AND handle!=''))");
    s.bind(1, stage).bind(2, metrics.dump()).bind(3, id);
    s.step();
  });
}

bool Store::remove(const std::string& id) {
  return write_job(id, [&]() -> bool {
    exec("BEGIN IMMEDIATE");
    try {
      Stmt s(db_, "DELETE FROM jobs WHERE id=? AND state IN ('SUCCEEDED','FAILED','CANCELLED')");
      s.bind(1, id);
      s.step();
      const bool removed = s.changes() == 1;
      if (removed) {
        Stmt e(db_, "DELETE FROM job_events WHERE job_id=?");
        e.bind(1, id);
        e.step();
      }
      exec("COMMIT");
      return removed;
    } catch (...) {
      rollback_quietly(db_);
      throw;
    }
  });
}

void Store::add_event(const std::string& id, const std::string& type, const nlohmann::json& data) {
  return write([&]() {
    Stmt s(db_, "INSERT INTO job_events(job_id, ts, type, data_json) VALUES(?,?,?,?)");
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    s.bind(1, id).bind(2, now).bind(3, type).bind(4, data.dump());
    s.step();
  });
}

}  // namespace qjobs::server

namespace qjobs::server {
std::vector<nlohmann::json> Store::events(const std::string& id, int limit) {
  const Reader r(*this);
  Stmt s(r.get(), "SELECT ts, type, data_json FROM job_events WHERE job_id=? ORDER BY id LIMIT ?");
  s.bind(1, id).bind(2, limit);
  std::vector<nlohmann::json> out;
  while (s.step()) {
    nlohmann::json e = nlohmann::json::parse(s.text(2), nullptr, false);
    if (!e.is_object()) e = nlohmann::json::object();
    e["type"] = s.text(1);
    e["ts"] = s.real(0);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> Store::all_ids() {
  const Reader r(*this);
  Stmt s(r.get(), "SELECT id FROM jobs");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}
}  // namespace qjobs::server
