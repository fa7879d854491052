// The SQLite store: migrations, guarded transitions, idempotency, pages.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <filesystem>

#include "common/error.hpp"
#include "server/store.hpp"

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
  EXPECT_TRUE(s.start("a", 123, "t", "slot0", 1.0));
  EXPECT_FALSE(s.start("a", 124, "t", "slot0", 1.0));  // already running
  EXPECT_EQ(s.get("a")->attempts, 1);
  EXPECT_TRUE(s.requeue("a", JobState::running, "lost", 2.0));
  EXPECT_EQ(s.get("a")->state, JobState::queued);
  EXPECT_TRUE(s.start("a", 125, "t", "slot0", 3.0));
  EXPECT_EQ(s.get("a")->attempts, 2);
  FinishInfo ok;
  ok.to = JobState::succeeded;
  EXPECT_FALSE(s.finish("a", JobState::cancelling, ok, 4.0));  // wrong old state
  EXPECT_TRUE(s.finish("a", JobState::running, ok, 4.0));
  EXPECT_FALSE(s.finish("a", JobState::running, FinishInfo{JobState::failed, ErrorType::none, "", "", {}}, 5.0));  // terminal stays
  EXPECT_EQ(s.get("a")->state, JobState::succeeded);
  EXPECT_FALSE(s.cancel_queued("a", 6.0));
  EXPECT_FALSE(s.cancel_running("a", 6.0));
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

}  // namespace
}  // namespace qjobs::server
