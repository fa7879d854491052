// The scheduler against a fake dispatcher: which job starts where, and what
// an ended worker means for its job.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "server/scheduler.hpp"
#include "server/store_faults.hpp"

namespace qjobs::server {
namespace {
namespace fs = std::filesystem;

class FakeDispatcher : public Dispatcher {
 public:
  LaunchedProcess launch(const LaunchRequest& req) override {
    launched.push_back(req);
    return {next_pid++, "tok"};
  }
  void signal(int pid, int sig) override { signals.push_back({pid, sig}); }
  std::vector<ProcessExit> reap() override { return std::exchange(exits, {}); }
  bool alive(int pid, const std::string&) override { return living.count(pid) != 0; }

  std::vector<LaunchRequest> launched;
  std::vector<std::pair<int, int>> signals;
  std::vector<ProcessExit> exits;
  std::set<int> living;
  int next_pid = 1000;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qjobs_sched_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "jobs");
    faults_ = dir_ / "faults";
    store_ = std::make_unique<Store>(dir_ / "q.db", install_store_faults(faults_));
  }
  void fault(const std::string& what) { std::ofstream(faults_) << what; }
  std::vector<std::string> event_messages(const std::string& id) {
    std::vector<std::string> out;
    std::ifstream in(dir_ / "jobs" / id / "events.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  void TearDown() override { fs::remove_all(dir_); }

  void add(const std::string& id, int devices = 1, int priority = 0, int max_attempts = 2) {
    NewJob j;
    j.id = id;
    j.algorithm = "RTN";
    j.devices_requested = devices;
    j.priority = priority;
    j.max_attempts = max_attempts;
    j.spec_yaml = "x";
    j.spec_json = "{}";
    store_->insert(j);
    JobDir(dir_ / "jobs" / id).create_layout();
    write_file_atomic(JobDir(dir_ / "jobs" / id).spec_yaml(), "x");
  }
  void worker_status(const std::string& id, const std::string& state, int attempt,
                     const std::string& error_type = "") {
    nlohmann::json s = {{"state", state}, {"attempt", attempt}, {"stage", "report"}};
    if (!error_type.empty()) {
      s["error_type"] = error_type;
      s["error"] = "boom";
    }
    JobDir(dir_ / "jobs" / id).write_status(s);
  }

  fs::path dir_;
  fs::path faults_;
  std::unique_ptr<Store> store_;
  FakeDispatcher fake_;
};

TEST_F(SchedulerTest, AssignsGpusByPriorityWithoutOvertaking) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{"0", "1", "2"}, 0}, 5});
  add("a", 2);
  add("b", 2);
  add("c", 1, /*priority=*/-5);
  s.tick();
  ASSERT_EQ(fake_.launched.size(), 1u);  // b needs 2, only 1 free; c may not overtake
  EXPECT_EQ(fake_.launched[0].job_id, "a");
  EXPECT_EQ(fake_.launched[0].cuda_visible_devices, "0,1");
  EXPECT_EQ(store_->get("a")->devices, "0,1");
  worker_status("a", "SUCCEEDED", 1);
  fake_.exits.push_back({1000, 0, std::nullopt});
  s.tick();
  EXPECT_EQ(store_->get("a")->state, JobState::succeeded);
  ASSERT_EQ(fake_.launched.size(), 3u);
  EXPECT_EQ(fake_.launched[1].job_id, "b");
  EXPECT_EQ(fake_.launched[2].job_id, "c");
}

TEST_F(SchedulerTest, LostWorkerIsRequeuedThenFailsWhenAttemptsRunOut) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  add("a");
  s.tick();
  worker_status("a", "RUNNING", 1);
  fake_.exits.push_back({1000, std::nullopt, SIGKILL});
  s.tick();  // requeued and started again in the same pass
  auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::running);
  EXPECT_EQ(j->attempts, 2);
  EXPECT_EQ(fake_.launched.back().attempt, 2);
  fake_.exits.push_back({1001, std::nullopt, SIGKILL});
  s.tick();
  j = store_->get("a");
  EXPECT_EQ(j->state, JobState::failed);
  EXPECT_EQ(j->error_type, ErrorType::worker_lost);
}

TEST_F(SchedulerTest, WorkerVerdictDecidesTheFailureType) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  add("a");
  s.tick();
  worker_status("a", "FAILED", 1, "MODEL_LOAD");
  fake_.exits.push_back({1000, 65, std::nullopt});
  s.tick();
  const auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::failed);
  EXPECT_EQ(j->error_type, ErrorType::model_load);
  EXPECT_EQ(j->attempts, 1);  // a verdict is not retried
}

TEST_F(SchedulerTest, CancelSendsTermThenKillAfterGrace) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, /*grace=*/0.2});
  add("a");
  s.tick();
  EXPECT_EQ(s.cancel("a"), JobState::cancelling);
  ASSERT_EQ(fake_.signals.size(), 1u);
  EXPECT_EQ(fake_.signals[0], std::make_pair(1000, SIGTERM));
  usleep(300000);
  s.tick();
  ASSERT_EQ(fake_.signals.size(), 2u);
  EXPECT_EQ(fake_.signals[1], std::make_pair(1000, SIGKILL));
  fake_.exits.push_back({1000, std::nullopt, SIGKILL});
  s.tick();
  EXPECT_EQ(store_->get("a")->state, JobState::cancelled);
  EXPECT_EQ(s.cancel("a"), JobState::cancelled);  // idempotent
}

TEST_F(SchedulerTest, RecoverAdoptsLiveWorkersAndSettlesGoneOnes) {
  add("live");
  add("gone");
  add("done");
  {
    FakeDispatcher first;
    Scheduler s(*store_, first, {dir_ / "jobs", Capacity{{}, 3}, 5});
    s.tick();
  }
  // The server died; "live" (pid 1000) still runs, the others are gone, and
  // "done" had written its verdict before the crash.
  fake_.living = {1000};
  worker_status("gone", "RUNNING", 1);
  worker_status("done", "SUCCEEDED", 1);
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 3}, 5});
  s.recover();
  EXPECT_EQ(store_->get("live")->state, JobState::running);
  EXPECT_EQ(store_->get("done")->state, JobState::succeeded);
  EXPECT_EQ(store_->get("gone")->state, JobState::queued);
  EXPECT_EQ(s.busy_devices(), 1);
  // The adopted worker finishes.
  worker_status("live", "SUCCEEDED", 1);
  fake_.living.clear();
  s.tick();
  EXPECT_EQ(store_->get("live")->state, JobState::succeeded);
}

TEST_F(SchedulerTest, TimeoutFailsTheJob) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  NewJob j;
  j.id = "slow";
  j.algorithm = "RTN";
  j.timeout_s = 0.1;
  j.spec_yaml = "x";
  j.spec_json = "{}";
  store_->insert(j);
  JobDir(dir_ / "jobs" / "slow").create_layout();
  write_file_atomic(JobDir(dir_ / "jobs" / "slow").spec_yaml(), "x");
  s.tick();
  usleep(200000);
  s.tick();
  ASSERT_FALSE(fake_.signals.empty());
  EXPECT_EQ(fake_.signals[0].second, SIGTERM);
  fake_.exits.push_back({1000, 70, std::nullopt});
  s.tick();
  const auto r = store_->get("slow");
  EXPECT_EQ(r->state, JobState::failed);
  EXPECT_EQ(r->error_type, ErrorType::timeout);
}

// Issue 11.2: a store that cannot write when a worker ends must not end the
// server. The transition is kept and retried; nothing is lost once writes
// go through again.
TEST_F(SchedulerTest, StoreFailureAtWorkerExitIsRetriedUntilItGoesThrough) {
  for (const std::string mode : {"full", "readonly", "ioerr"}) {
    SCOPED_TRACE(mode);
    const std::string id = "job-" + mode;
    FakeDispatcher fake;
    Scheduler s(*store_, fake, {dir_ / "jobs", Capacity{{}, 1}, 5});
    add(id);
    s.tick();
    ASSERT_EQ(store_->get(id)->state, JobState::running);
    worker_status(id, "SUCCEEDED", 1);
    fault(mode);
    fake.exits.push_back({1000, 0, std::nullopt});
    EXPECT_NO_THROW(s.tick());
    EXPECT_EQ(store_->get(id)->state, JobState::running);  // reads still work
    EXPECT_EQ(s.health().unsettled, 1u);
    EXPECT_FALSE(store_->health().writable);
    EXPECT_EQ(s.busy_devices(), 1) << "the device stays held until the transition is stored";
    for (int i = 0; i < 5; ++i) EXPECT_NO_THROW(s.tick());
    fault("");
    std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the backoff
    s.tick();
    EXPECT_EQ(store_->get(id)->state, JobState::succeeded);
    EXPECT_EQ(s.health().unsettled, 0u);
    EXPECT_TRUE(store_->health().writable);
    EXPECT_EQ(s.busy_devices(), 0);
  }
}

// While the store cannot write, no job starts (its RUNNING row could not be
// stored); a probe write notices when it can again.
TEST_F(SchedulerTest, NoJobStartsWhileTheStoreCannotWrite) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  add("a");
  fault("full");
  EXPECT_THROW(store_->add_event("a", "probe", nlohmann::json::object()), Error);
  s.tick();
  EXPECT_TRUE(fake_.launched.empty());
  EXPECT_EQ(store_->get("a")->state, JobState::queued);
  fault("");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  s.tick();
  ASSERT_EQ(fake_.launched.size(), 1u);
  EXPECT_EQ(store_->get("a")->state, JobState::running);
}

// Issue 11.3: status.json is untrusted. A wrongly typed field is an event on
// the job and the file counts as absent; nothing throws.
TEST_F(SchedulerTest, WronglyTypedStatusJsonIsAnEventNotACrash) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  add("a");
  s.tick();
  write_file_atomic(JobDir(dir_ / "jobs" / "a").status(), R"({"attempt": "1", "state": "SUCCEEDED"})");
  fake_.exits.push_back({1000, 0, std::nullopt});
  EXPECT_NO_THROW(s.tick());
  const auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::running) << "no verdict: requeued and started again";
  EXPECT_EQ(j->attempts, 2);
  bool warned = false;
  for (const auto& e : event_messages("a"))
    warned |= e.find("status.json is invalid") != std::string::npos && e.find("'attempt' must be an integer") != std::string::npos;
  EXPECT_TRUE(warned);
}

// Issue 11.10: a worker whose status.json stops changing is killed and
// treated as lost; one that keeps touching it is left alone.
TEST_F(SchedulerTest, StalledWorkerIsKilledAndRequeued) {
  SchedulerOptions o{dir_ / "jobs", Capacity{{}, 2}, 5};
  o.stall_timeout_s = 0.3;
  Scheduler s(*store_, fake_, o);
  add("silent");
  add("beating");
  s.tick();
  ASSERT_EQ(fake_.launched.size(), 2u);
  for (int i = 0; i < 8; ++i) {
    worker_status("beating", "RUNNING", 1);  // the heartbeat
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s.tick();
  }
  ASSERT_EQ(fake_.signals.size(), 1u);
  EXPECT_EQ(fake_.signals[0], std::make_pair(1000, SIGKILL));
  fake_.exits.push_back({1000, std::nullopt, SIGKILL});
  s.tick();
  const auto j = store_->get("silent");
  EXPECT_EQ(j->state, JobState::running);
  EXPECT_EQ(j->attempts, 2);
  bool said = false;
  for (const auto& e : event_messages("silent")) said |= e.find("worker stalled") != std::string::npos;
  EXPECT_TRUE(said) << "the requeue event says why";
  EXPECT_EQ(store_->get("beating")->attempts, 1);
}

// Issue 11.11: a full disk in the worker is NO_SPACE, retried after a pause.
TEST_F(SchedulerTest, NoSpaceIsRetriedAfterAPause) {
  SchedulerOptions o{dir_ / "jobs", Capacity{{}, 1}, 5};
  o.no_space_retry_s = 0.3;
  Scheduler s(*store_, fake_, o);
  add("a");
  s.tick();
  worker_status("a", "FAILED", 1, "NO_SPACE");
  fake_.exits.push_back({1000, worker_exit::no_space, std::nullopt});
  s.tick();
  auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::queued);
  ASSERT_TRUE(j->not_before);
  EXPECT_NE(j->error.find("no space left"), std::string::npos) << j->error;
  EXPECT_EQ(fake_.launched.size(), 1u) << "not retried at once";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  s.tick();
  ASSERT_EQ(fake_.launched.size(), 2u);
  worker_status("a", "FAILED", 2, "NO_SPACE");
  fake_.exits.push_back({1001, worker_exit::no_space, std::nullopt});
  s.tick();
  j = store_->get("a");
  EXPECT_EQ(j->state, JobState::failed);
  EXPECT_EQ(j->error_type, ErrorType::no_space);
}

// Issue 11.11: a job whose folder is removed while it runs fails with DATA,
// whatever the worker says.
TEST_F(SchedulerTest, JobWhoseFolderWasRemovedFailsWithData) {
  Scheduler s(*store_, fake_, {dir_ / "jobs", Capacity{{}, 1}, 5});
  add("a");
  s.tick();
  fs::remove_all(dir_ / "jobs" / "a");
  JobDir(dir_ / "jobs" / "a").create_layout();  // a worker that recreated the folder
  worker_status("a", "SUCCEEDED", 1);
  fake_.exits.push_back({1000, 0, std::nullopt});
  s.tick();
  const auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::failed);
  EXPECT_EQ(j->error_type, ErrorType::data);
  EXPECT_NE(j->error.find("was removed"), std::string::npos) << j->error;
}

}  // namespace
}  // namespace qjobs::server
