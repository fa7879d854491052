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

struct FakeExit {
  int pid = 0;
  std::optional<int> exit_code;
  std::optional<int> signal;
};

// A local-style backend: attempts run at once; `exits` are the processes
// that ended; adopted ones end when they leave `living`.
class FakeDispatcher : public Dispatcher {
 public:
  std::string backend() const override { return "local"; }
  std::string launch(const LaunchRequest& req) override {
    launched.push_back(req);
    return local_handle(next_pid++, "tok");
  }
  void signal(const std::string& handle, int sig) override {
    int pid = 0;
    std::string tok;
    parse_local_handle(handle, &pid, &tok);
    signals.push_back({pid, sig});
  }
  void watch(const std::string& handle) override { watched.push_back(handle); }
  std::vector<AttemptUpdate> poll() override {
    std::vector<AttemptUpdate> out;
    for (const auto& e : std::exchange(exits, {})) {
      AttemptUpdate u;
      u.handle = local_handle(e.pid, "tok");
      u.exit_code = e.exit_code;
      u.signal = e.signal;
      out.push_back(u);
    }
    for (auto it = watched.begin(); it != watched.end();) {
      int pid = 0;
      std::string tok;
      parse_local_handle(*it, &pid, &tok);
      if (living.count(pid)) {
        ++it;
        continue;
      }
      AttemptUpdate u;
      u.handle = *it;
      out.push_back(u);
      it = watched.erase(it);
    }
    return out;
  }

  std::vector<LaunchRequest> launched;
  std::vector<std::pair<int, int>> signals;
  std::vector<FakeExit> exits;
  std::vector<std::string> watched;
  std::set<int> living;
  int next_pid = 1000;
};

// A Slurm-style backend: launch() queues; the test says what each attempt
// does next through `updates`; launch can fail transiently.
class FakeQueue : public Dispatcher {
 public:
  std::string backend() const override { return "slurm"; }
  bool queues() const override { return true; }
  std::string launch(const LaunchRequest& req) override {
    if (down) {
      ++refused;
      throw Error(ErrorKind::io, "sbatch failed: Unable to contact slurm controller");
    }
    launched.push_back(req);
    return "slurm:" + std::to_string(next_job++) + "@test";
  }
  bool transient() const override { return down; }
  void signal(const std::string& handle, int sig) override { signals.push_back({handle, sig}); }
  void watch(const std::string& handle) override { watched.push_back(handle); }
  std::vector<AttemptUpdate> poll() override { return std::exchange(updates, {}); }
  std::vector<UnrecordedAttempt> unrecorded() override { return found; }

  void push(const std::string& handle, AttemptUpdate::Phase phase, AttemptUpdate::End end = AttemptUpdate::End::exited,
            const std::string& detail = "", const std::string& stage = "") {
    AttemptUpdate u;
    u.handle = handle;
    u.phase = phase;
    u.end = end;
    u.detail = detail;
    u.stage = stage;
    updates.push_back(u);
  }

  bool down = false;
  int refused = 0;
  std::vector<LaunchRequest> launched;
  std::vector<std::pair<std::string, int>> signals;
  std::vector<AttemptUpdate> updates;
  std::vector<std::string> watched;
  std::vector<UnrecordedAttempt> found;
  int next_job = 1;
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
  void worker_status(const std::string& id, const std::string& state, int attempt, const std::string& error_type = "") {
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

// The timeout is measured on the scheduler's clock, which tests inject:
// nothing at 99 s of a 100 s TIMEOUT_S, SIGTERM past it.
TEST_F(SchedulerTest, TimeoutFailsTheJobOnTheInjectedClock) {
  double t = 1000;
  SchedulerOptions o{dir_ / "jobs", Capacity{{}, 1}, 5};
  o.clock = [&] { return t; };
  o.stall_timeout_s = 0;
  Scheduler s(*store_, fake_, o);
  NewJob j;
  j.id = "slow";
  j.algorithm = "RTN";
  j.timeout_s = 100;
  j.spec_yaml = "x";
  j.spec_json = "{}";
  store_->insert(j);
  JobDir(dir_ / "jobs" / "slow").create_layout();
  write_file_atomic(JobDir(dir_ / "jobs" / "slow").spec_yaml(), "x");
  s.tick();
  EXPECT_EQ(*store_->get("slow")->started_at, 1000);
  t = 1099;
  s.tick();
  EXPECT_TRUE(fake_.signals.empty());
  t = 1100.5;
  s.tick();
  ASSERT_EQ(fake_.signals.size(), 1u);
  EXPECT_EQ(fake_.signals[0].second, SIGTERM);
  t = 1104;
  s.tick();
  EXPECT_EQ(fake_.signals.size(), 1u) << "within the 5 s grace";
  t = 1106;
  s.tick();
  ASSERT_EQ(fake_.signals.size(), 2u);
  EXPECT_EQ(fake_.signals[1].second, SIGKILL);
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
    warned |= e.find("status.json is invalid") != std::string::npos &&
              e.find("'attempt' must be an integer") != std::string::npos;
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

// Issue 13: a backend that queues. A dispatched job stays QUEUED with the
// backend's stage until it starts; its TIMEOUT_S counts from the start;
// an end the backend calls lost is requeued as a new attempt.
TEST_F(SchedulerTest, QueuingBackendPendingRunningLost) {
  double t = 50;
  SchedulerOptions o{dir_ / "jobs", Capacity{{}, 4}, 5};
  o.clock = [&] { return t; };
  o.stall_timeout_s = 0;
  FakeQueue q;
  Scheduler s(*store_, q, o);
  add("a");
  s.tick();
  ASSERT_EQ(q.launched.size(), 1u);
  auto j = store_->get("a");
  EXPECT_EQ(j->state, JobState::queued);
  EXPECT_EQ(j->handle, "slurm:1@test");
  EXPECT_EQ(j->attempts, 1);
  EXPECT_EQ(j->stage, "pending in slurm");
  q.push("slurm:1@test", AttemptUpdate::Phase::pending, {}, "", "pending in Slurm (Resources)");
  s.tick();
  EXPECT_EQ(store_->get("a")->stage, "pending in Slurm (Resources)");
  EXPECT_EQ(q.launched.size(), 1u) << "a dispatched job is not submitted again";
  t = 80;
  q.push("slurm:1@test", AttemptUpdate::Phase::running);
  s.tick();
  j = store_->get("a");
  EXPECT_EQ(j->state, JobState::running);
  EXPECT_EQ(*j->started_at, 80);
  worker_status("a", "RUNNING", 1);
  q.push("slurm:1@test", AttemptUpdate::Phase::ended, AttemptUpdate::End::lost, "Slurm NODE_FAIL (Slurm job 1)");
  s.tick();
  j = store_->get("a");
  EXPECT_EQ(j->attempts, 2);
  EXPECT_EQ(j->handle, "slurm:2@test");
  EXPECT_EQ(q.launched.back().attempt, 2);
  bool said = false;
  for (const auto& e : event_messages("a")) said |= e.find("NODE_FAIL") != std::string::npos;
  EXPECT_TRUE(said);
}

// A status.json that says SUCCEEDED does not outvote a backend that lost the
// attempt (an out-of-memory kill after the last write, say)... but a
// COMPLETED job's verdict is the worker's.
TEST_F(SchedulerTest, QueuingBackendVerdictsAndExternalCancel) {
  FakeQueue q;
  Scheduler s(*store_, q, {dir_ / "jobs", Capacity{{}, 4}, 5});
  add("ok");
  add("theirs");
  add("slow");
  s.tick();
  ASSERT_EQ(q.launched.size(), 3u);
  for (const auto* h : {"slurm:1@test", "slurm:2@test", "slurm:3@test"}) q.push(h, AttemptUpdate::Phase::running);
  s.tick();
  worker_status("ok", "SUCCEEDED", 1);
  q.push("slurm:1@test", AttemptUpdate::Phase::ended, AttemptUpdate::End::exited);
  q.push("slurm:2@test", AttemptUpdate::Phase::ended, AttemptUpdate::End::cancelled,
         "cancelled in Slurm by alice (uid 1000)");
  q.push("slurm:3@test", AttemptUpdate::Phase::ended, AttemptUpdate::End::timeout, "Slurm's time limit");
  s.tick();
  EXPECT_EQ(store_->get("ok")->state, JobState::succeeded);
  const auto theirs = store_->get("theirs");
  EXPECT_EQ(theirs->state, JobState::cancelled);
  EXPECT_NE(theirs->error.find("alice"), std::string::npos) << theirs->error;
  bool who = false;
  for (const auto& e : event_messages("theirs")) who |= e.find("by alice") != std::string::npos;
  EXPECT_TRUE(who) << "the event says who cancelled it";
  EXPECT_EQ(store_->get("slow")->error_type, ErrorType::timeout);
  EXPECT_EQ(store_->get("theirs")->attempts, 1);
}

// Cancel of a job still pending in the backend: CANCELLING, the backend is
// told (scancel), CANCELLED when it reports the end.
TEST_F(SchedulerTest, QueuingBackendCancelWhilePending) {
  FakeQueue q;
  Scheduler s(*store_, q, {dir_ / "jobs", Capacity{{}, 4}, 5});
  add("a");
  s.tick();
  EXPECT_EQ(s.cancel("a"), JobState::cancelling);
  ASSERT_EQ(q.signals.size(), 1u);
  EXPECT_EQ(q.signals[0], std::make_pair(std::string("slurm:1@test"), SIGTERM));
  q.push("slurm:1@test", AttemptUpdate::Phase::ended, AttemptUpdate::End::cancelled, "cancelled in Slurm by root");
  s.tick();
  EXPECT_EQ(store_->get("a")->state, JobState::cancelled);
  EXPECT_EQ(q.launched.size(), 1u);
}

// The controller is down: the job stays QUEUED with one warning event, no
// more submissions are tried until the backoff passes, and it is submitted
// once the controller answers.
TEST_F(SchedulerTest, QueuingBackendDownAtSubmissionKeepsTheJobQueued) {
  double t = 0;
  SchedulerOptions o{dir_ / "jobs", Capacity{{}, 4}, 5};
  o.clock = [&] { return t; };
  FakeQueue q;
  q.down = true;
  Scheduler s(*store_, q, o);
  add("a");
  add("b");
  s.tick();
  EXPECT_EQ(q.refused, 1) << "one refusal stops this pass";
  s.tick();
  EXPECT_EQ(q.refused, 1) << "backing off";
  t = 1.5;
  s.tick();
  EXPECT_EQ(q.refused, 2);
  EXPECT_EQ(store_->get("a")->state, JobState::queued);
  EXPECT_EQ(store_->get("a")->attempts, 0);
  int warnings = 0;
  for (const auto& e : event_messages("a")) warnings += e.find("cannot submit to slurm yet") != std::string::npos;
  EXPECT_EQ(warnings, 1);
  q.down = false;
  t = 10;
  s.tick();
  ASSERT_EQ(q.launched.size(), 2u);
  EXPECT_EQ(q.launched[0].job_id, "a");
  EXPECT_EQ(store_->get("a")->handle, "slurm:1@test");
  EXPECT_EQ(store_->get("a")->attempts, 1);
}

// After a restart: attempts in the store are watched, not resubmitted; an
// attempt the backend has but the store missed (killed between sbatch and
// the write) is adopted; a job whose handle has no backend is settled.
TEST_F(SchedulerTest, QueuingBackendRecoveryNeverSubmitsTwice) {
  add("recorded");
  add("unrecorded");
  add("fresh");
  {
    FakeQueue first;
    Scheduler s(*store_, first, {dir_ / "jobs", Capacity{{}, 1}, 5});
    s.tick();  // only "recorded" goes out (one in flight)
    first.push("slurm:1@test", AttemptUpdate::Phase::running);
    s.tick();
  }
  ASSERT_EQ(store_->get("recorded")->state, JobState::running);
  FakeQueue q;
  q.next_job = 10;
  q.found = {{"unrecorded", 1, "slurm:7@test"}, {"recorded", 1, "slurm:1@test"}};
  Scheduler s(*store_, q, {dir_ / "jobs", Capacity{{}, 3}, 5});
  s.recover();
  EXPECT_EQ(q.watched, (std::vector<std::string>{"slurm:1@test", "slurm:7@test"}));
  EXPECT_EQ(store_->get("unrecorded")->handle, "slurm:7@test");
  EXPECT_EQ(store_->get("unrecorded")->attempts, 1);
  s.tick();
  ASSERT_EQ(q.launched.size(), 1u);
  EXPECT_EQ(q.launched[0].job_id, "fresh");
  worker_status("recorded", "SUCCEEDED", 1);
  q.push("slurm:1@test", AttemptUpdate::Phase::ended);
  s.tick();
  EXPECT_EQ(store_->get("recorded")->state, JobState::succeeded);
}

}  // namespace
}  // namespace qjobs::server
