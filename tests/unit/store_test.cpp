// The SQLite store: migrations, guarded transitions, idempotency, pages.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "common/error.hpp"
#include "server/store.hpp"
#include "server/store_faults.hpp"

namespace qjobs::server {
namespace {
namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_store_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  NewJob job(const std::string& id, int priority = 0) {
    NewJob j;
    j.id = id;
    j.algorithm = "RTN";
    j.priority = priority;
    j.spec_yaml = "MODEL: m\nALGORITHM: RTN\n";
    j.spec_json = "{}";
    return j;
  }
  fs::path dir_;
};

TEST_F(StoreTest, MigratesAndReopens) {
  {
    Store s(dir_ / "q.db");
    s.insert(job("a"));
  }
  Store s(dir_ / "q.db");
  ASSERT_TRUE(s.get("a"));
  sqlite3* db = nullptr;
  sqlite3_open((dir_ / "q.db").c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), Store::schema_version());
  sqlite3_finalize(st);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(StoreTest, RefusesANewerSchema) {
  { Store s(dir_ / "q.db"); }
  sqlite3* db = nullptr;
  sqlite3_open((dir_ / "q.db").c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_THROW(Store(dir_ / "q.db"), Error);
}

TEST_F(StoreTest, TransitionsAreGuardedByTheOldState) {
  Store s(dir_ / "q.db");
  s.insert(job("a"));
  EXPECT_TRUE(s.start("a", "local:123:t", "slot0", 1.0));
  EXPECT_FALSE(s.start("a", "local:124:t", "slot0", 1.0));  // already running
  EXPECT_EQ(s.get("a")->attempts, 1);
  EXPECT_TRUE(s.requeue("a", JobState::running, "lost", 2.0));
  EXPECT_EQ(s.get("a")->state, JobState::queued);
  EXPECT_TRUE(s.start("a", "local:125:t", "slot0", 3.0));
  EXPECT_EQ(s.get("a")->attempts, 2);
  FinishInfo ok;
  ok.to = JobState::succeeded;
  EXPECT_FALSE(s.finish("a", JobState::cancelling, ok, 4.0));  // wrong old state
  EXPECT_TRUE(s.finish("a", JobState::running, ok, 4.0));
  EXPECT_FALSE(s.finish("a", JobState::running, FinishInfo{JobState::failed, ErrorType::none, "", "", {}},
                        5.0));  // terminal stays
  EXPECT_EQ(s.get("a")->state, JobState::succeeded);
  EXPECT_FALSE(s.cancel_queued("a", 6.0));
  EXPECT_FALSE(s.cancel_running("a", 6.0));
}

// Schema 2 -> 3: a running job's pid and start time become its handle, so a
// server upgraded while workers run adopts them.
TEST_F(StoreTest, MigrationThreeTurnsThePidIntoAHandle) {
  {
    Store s(dir_ / "q.db");
    s.insert(job("a"));
    s.insert(job("b"));
  }
  sqlite3* db = nullptr;
  sqlite3_open((dir_ / "q.db").c_str(), &db);
  ASSERT_EQ(sqlite3_exec(db,
                         "ALTER TABLE jobs DROP COLUMN handle; "
                         "UPDATE jobs SET state='RUNNING', pid=42, pid_start='777' WHERE id='a'; "
                         "PRAGMA user_version=2",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  Store s(dir_ / "q.db");
  EXPECT_EQ(s.get("a")->handle, "local:42:777");
  EXPECT_EQ(s.get("b")->handle, "");
  EXPECT_EQ(to_json(*s.get("a"))["backend"], "local");
}

// A backend that queues: dispatched jobs stay QUEUED with their handle and
// cannot be started, dispatched again or cancelled as if undispatched.
TEST_F(StoreTest, DispatchedJobsAreGuarded) {
  Store s(dir_ / "q.db");
  s.insert(job("a"));
  s.insert(job("b"));
  EXPECT_TRUE(s.dispatch("a", "slurm:5@c", "pending in Slurm", 1.0));
  auto a = s.get("a");
  EXPECT_EQ(a->state, JobState::queued);
  EXPECT_EQ(a->attempts, 1);
  EXPECT_EQ(a->stage, "pending in Slurm");
  EXPECT_FALSE(a->started_at);
  EXPECT_FALSE(s.dispatch("a", "slurm:6@c", "pending in Slurm", 1.0));
  EXPECT_FALSE(s.start("a", "local:1:t", "", 1.0));
  EXPECT_FALSE(s.cancel_queued("a", 1.0)) << "it is in Slurm's queue: cancel goes through CANCELLING";
  EXPECT_FALSE(s.mark_running("a", "slurm:9@c", 2.0)) << "another attempt's handle";
  EXPECT_TRUE(s.mark_running("a", "slurm:5@c", 2.0));
  a = s.get("a");
  EXPECT_EQ(a->state, JobState::running);
  EXPECT_EQ(*a->started_at, 2.0);
  EXPECT_TRUE(s.requeue("a", JobState::running, "lost", 3.0));
  EXPECT_EQ(s.get("a")->handle, "");
  // Cancelling a dispatched, not yet running job.
  EXPECT_TRUE(s.dispatch("b", "slurm:7@c", "pending in Slurm", 1.0));
  EXPECT_TRUE(s.cancel_running("b", 2.0));
  EXPECT_EQ(s.get("b")->state, JobState::cancelling);
}

TEST_F(StoreTest, RemoveOnlyTerminal) {
  Store s(dir_ / "q.db");
  s.insert(job("a"));
  EXPECT_FALSE(s.remove("a"));
  EXPECT_TRUE(s.cancel_queued("a", 1.0));
  EXPECT_TRUE(s.remove("a"));
  EXPECT_FALSE(s.get("a"));
}

TEST_F(StoreTest, IdempotencyKeyReturnsTheFirstJob) {
  Store s(dir_ / "q.db");
  auto a = job("a");
  a.idempotency_key = "k1";
  auto b = job("b");
  b.idempotency_key = "k1";
  EXPECT_TRUE(s.insert(a).created);
  const auto r = s.insert(b);
  EXPECT_FALSE(r.created);
  EXPECT_EQ(r.job.id, "a");
  EXPECT_FALSE(s.get("b"));
}

TEST_F(StoreTest, PagesAreNewestFirstAndComplete) {
  Store s(dir_ / "q.db");
  for (int i = 0; i < 25; ++i) s.insert(job("j" + std::to_string(i)));
  std::vector<std::string> seen;
  std::optional<int64_t> cursor;
  while (true) {
    const auto page = s.list(std::nullopt, 10, cursor);
    for (const auto& r : page) seen.push_back(r.id);
    if (page.size() < 10) break;
    cursor = page.back().seq;
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "j24");
  EXPECT_EQ(seen.back(), "j0");
  EXPECT_EQ(s.list(JobState::queued, 100, std::nullopt).size(), 25u);
  EXPECT_EQ(s.list(JobState::running, 100, std::nullopt).size(), 0u);
}

TEST_F(StoreTest, QueuedOrderIsPriorityThenAge) {
  Store s(dir_ / "q.db");
  s.insert(job("low", -1));
  s.insert(job("first", 0));
  s.insert(job("high", 5));
  s.insert(job("second", 0));
  const auto q = s.in_state(JobState::queued);
  ASSERT_EQ(q.size(), 4u);
  EXPECT_EQ(q[0].id, "high");
  EXPECT_EQ(q[1].id, "first");
  EXPECT_EQ(q[2].id, "second");
  EXPECT_EQ(q[3].id, "low");
}

// Issue 11.2: a write that fails on a full disk is reported as itself (not as
// the ROLLBACK after it), changes nothing, and marks the store unwritable
// until a write goes through again.
TEST_F(StoreTest, FullDiskIsReportedAsItselfAndChangesNothing) {
  const fs::path ctl = dir_ / "faults";
  Store s(dir_ / "q.db", install_store_faults(ctl));
  s.insert(job("a"));
  std::ofstream(ctl) << "full";
  try {
    s.insert(job("b"));
    FAIL() << "the insert must fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::no_space);
    EXPECT_NE(std::string(e.what()).find("database or disk is full"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("no transaction is active"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(s.health().writable);
  EXPECT_EQ(s.health().write_errors, 1u);
  EXPECT_FALSE(s.get("b"));
  EXPECT_EQ(s.list(std::nullopt, 10, std::nullopt).size(), 1u);
  EXPECT_FALSE(s.probe_write().writable);
  std::ofstream(ctl) << "";
  EXPECT_TRUE(s.probe_write().writable);
  s.insert(job("b"));
  EXPECT_TRUE(s.get("b"));
}

TEST_F(StoreTest, ReadOnlyAndIoErrorsAreIoErrors) {
  const fs::path ctl = dir_ / "faults";
  Store s(dir_ / "q.db", install_store_faults(ctl));
  s.insert(job("a"));
  for (const char* mode : {"readonly", "ioerr"}) {
    std::ofstream(ctl) << mode;
    try {
      s.start("a", "local:1:t", "", 1.0);
      FAIL() << mode;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::io) << mode;
      EXPECT_EQ(std::string(e.what()).find("no transaction is active"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.get("a")->state, JobState::queued) << mode;
  }
}

// Issue 11.9: reads do not wait behind a write that is stuck on the disk
// (WAL readers on their own connections).
TEST_F(StoreTest, ReadsGoOnWhileAWriteHangs) {
  const fs::path ctl = dir_ / "faults";
  Store s(dir_ / "q.db", install_store_faults(ctl));
  s.insert(job("a"));
  std::ofstream(ctl) << "hang";
  auto writer = std::async(std::launch::async, [&] { s.insert(job("b")); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto reader = std::async(std::launch::async, [&] {
    return std::make_pair(s.get("a").has_value(), s.list(std::nullopt, 10, std::nullopt).size());
  });
  const bool read_done = reader.wait_for(std::chrono::seconds(20)) == std::future_status::ready;
  const bool writer_still_blocked = writer.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready;
  std::ofstream(ctl) << "";
  writer.get();
  ASSERT_TRUE(read_done) << "a read waited for the hung write";
  EXPECT_TRUE(writer_still_blocked);
  const auto [found, n] = reader.get();
  EXPECT_TRUE(found);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(s.get("b"));
}

// Issue 30: concurrent submissions share one commit (one fsync). While the
// first insert's commit hangs, 16 more queue; they are then stored together,
// each returns its own row, a key used twice in the group names one job, and
// a row that breaks a constraint fails alone.
TEST_F(StoreTest, ConcurrentInsertsShareOneCommit) {
  const fs::path ctl = dir_ / "faults";
  Store s(dir_ / "q.db", install_store_faults(ctl));
  s.insert(job("dup"));
  std::ofstream(ctl) << "hang";
  auto first = std::async(std::launch::async, [&] { return s.insert(job("first")); });
  for (int i = 0; i < 2000 && !s.insert_stats().committing; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // until "first" is being committed
  ASSERT_TRUE(s.insert_stats().committing);
  const auto before = s.insert_stats();
  std::vector<std::future<Store::InsertResult>> rest;
  for (int i = 0; i < 16; ++i) {
    NewJob j = job(i == 15 ? "dup" : "j" + std::to_string(i));
    if (i == 3 || i == 4) j.idempotency_key = "same-key";
    rest.push_back(std::async(std::launch::async, [&s, j] { return s.insert(j); }));
  }
  for (int i = 0; i < 2000 && s.insert_stats().waiting < 16; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(s.insert_stats().waiting, 16u) << "the inserts did not queue behind the hung commit";
  std::ofstream(ctl) << "";
  EXPECT_TRUE(first.get().created);
  int created = 0;
  std::set<std::string> keyed;
  for (int i = 0; i < 16; ++i) {
    if (i == 15) {
      EXPECT_THROW(rest[i].get(), Error) << "a second row with an existing id was stored";
      continue;
    }
    const auto r = rest[i].get();
    created += r.created;
    if (i == 3 || i == 4) keyed.insert(r.job.id);
    else EXPECT_EQ(r.job.id, "j" + std::to_string(i));
    EXPECT_EQ(r.job.state, JobState::queued);
  }
  EXPECT_EQ(created, 14);  // 15 inserts, two of them with one key
  EXPECT_EQ(keyed.size(), 1u) << "one idempotency key made two jobs";
  const auto after = s.insert_stats();
  EXPECT_EQ(after.commits - before.commits, 2u) << "the first commit, then one for the 16 that waited";
  EXPECT_EQ(after.inserts - before.inserts, 15u);
  EXPECT_EQ(s.list(std::nullopt, 100, std::nullopt).size(), 16u);  // dup, first and 14
}

// A record read into memory is never served after a write of it: get()
// sees every transition as soon as it returned.
TEST_F(StoreTest, ReadsSeeEveryWriteOfACachedRecord) {
  Store s(dir_ / "q.db");
  s.insert(job("a"));
  ASSERT_EQ(s.get("a")->state, JobState::queued);
  EXPECT_TRUE(s.peek("a"));  // now served from memory
  ASSERT_TRUE(s.start("a", "local:1:1", "slot0", 1.0));
  EXPECT_FALSE(s.peek("a"));
  EXPECT_EQ(s.get("a")->state, JobState::running);
  s.set_stage("a", "quantize", nlohmann::json::object());
  EXPECT_EQ(s.get("a")->stage, "quantize");
  ASSERT_TRUE(s.finish("a", JobState::running, FinishInfo{}, 2.0));
  EXPECT_EQ(s.get("a")->state, JobState::succeeded);
  ASSERT_TRUE(s.remove("a"));
  EXPECT_FALSE(s.get("a"));
}

// Issue 16: a job is found by its name (JOB_ID) as well as its id: the newest
// job of that name, unless some job has that id; names need not be unique.
TEST_F(StoreTest, JobsAreFoundByNameNewestFirst) {
  Store s(dir_ / "q.db");
  auto a = job("20261202-000000-aaaa");
  a.name = "awq_quantization";
  auto b = job("20261202-000001-bbbb");
  b.name = "awq_quantization";
  auto c = job("awq_quantization-is-an-id");
  c.name = "other";
  s.insert(a);
  s.insert(b);
  s.insert(c);
  ASSERT_TRUE(s.find("awq_quantization"));
  EXPECT_EQ(s.find("awq_quantization")->id, b.id) << "the newest of the name";
  EXPECT_EQ(s.find(a.id)->id, a.id) << "an id still finds its own job";
  EXPECT_EQ(s.find("awq_quantization-is-an-id")->id, c.id);
  EXPECT_FALSE(s.find("nobody"));
  EXPECT_FALSE(s.find("")) << "jobs without a name are not found by the empty name";
  const auto named = s.list(std::nullopt, 10, std::nullopt, std::string("awq_quantization"));
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].id, b.id);
  EXPECT_EQ(named[1].id, a.id);
  EXPECT_EQ(s.list(std::nullopt, 10, std::nullopt).size(), 3u);
}

}  // namespace
}  // namespace qjobs::server
