// Issue 13: the Slurm backend against a real slurmctld + slurmd (and
// slurmdbd, so that sacct answers), brought up by scripts/slurm-local.sh;
// the real qjobs-server, jobctl and qjobs-worker. SLURM_CONF names the
// cluster; without one these tests skip, except under CI (CI=true) or with
// QJOBS_REQUIRE_SLURM=1, where a missing cluster is a failure.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "integration/harness.hpp"
#include "jobs/model/random_model.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

// A program's full path, from PATH then /usr/sbin (run_cmd does no lookup).
std::string tool(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin";
  for (const auto& d : split(path + ":/usr/sbin:/sbin", ':'))
    if (!d.empty() && ::access((fs::path(d) / name).c_str(), X_OK) == 0) return (fs::path(d) / name).string();
  return name;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One row of `sacct -X` for every Slurm job named `name`.
struct AcctRow {
  std::string job, name, state, exit_code;
  int64_t submit = 0, start = 0, end = 0;  // unix seconds; 0 unknown
};

int64_t slurm_time(const std::string& t) {
  std::tm tm{};
  std::istringstream in(t);
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::vector<AcctRow> sacct(const std::string& names) {
  const auto r = run_cmd({tool("sacct"), "--noheader", "--parsable2", "--allocations", "--name=" + names,
                          "--starttime=now-1days", "--format=JobIDRaw,JobName,State,ExitCode,Submit,Start,End"},
                         {{"TZ", "UTC"}});
  std::vector<AcctRow> rows;
  for (const auto& line : split(r.out, '\n')) {
    const auto f = split(trim(line), '|');
    if (f.size() < 7) continue;
    rows.push_back({f[0], f[1], f[2], f[3], slurm_time(f[4]), slurm_time(f[5]), slurm_time(f[6])});
  }
  return rows;
}

bool slurm_required() {
  const char* ci = std::getenv("CI");
  const char* req = std::getenv("QJOBS_REQUIRE_SLURM");
  return (ci && std::string(ci) == "true") || (req && std::string(req) == "1");
}

// The Slurm job id of a job's current attempt, from its handle.
std::string slurm_id(const json& job) {
  const std::string h = job.value("handle", "");
  if (h.rfind("slurm:", 0) != 0) return "";
  return h.substr(6, h.find('@') == std::string::npos ? std::string::npos : h.find('@') - 6);
}

class Slurm : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* conf = std::getenv("SLURM_CONF");
    const bool up = conf && fs::exists(conf) && run_cmd({tool("timeout"), "10", "scontrol", "ping"}).rc == 0;
    if (!up) {
      if (slurm_required())
        FAIL() << "no Slurm cluster (SLURM_CONF unset or slurmctld down): start one with "
                  "scripts/slurm-local.sh start and export what it prints";
      GTEST_SKIP() << "no Slurm cluster: scripts/slurm-local.sh start, then export SLURM_CONF";
    }
    conf_ = conf;
    root_ = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    model_ = root_ / "model";
    model::RandomModelOptions o;
    o.hidden = 64;
    o.intermediate = 128;
    o.layers = 1;
    o.vocab = 128;
    o.seed = 13;
    model::write_random_llama(model_, o);
  }
  void TearDown() override {
    if (root_.empty()) return;
    // Nothing of this test may stay in Slurm's queue.
    for (const auto& id : ids_) run_cmd({tool("scancel"), "--name=" + id});
    remove_test_dir(root_);
  }

  std::string rtn_spec(int priority = 0) const {
    return "MODEL: \"" + model_.string() + "\"\nALGORITHM: RTN\nPRIORITY: " + std::to_string(priority) +
           "\nllm:\n  RTN:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n";
  }
  std::vector<std::string> slurm_args(std::vector<std::string> more = {}) const {
    std::vector<std::string> a = {"--dispatcher", "slurm", "--slurm-poll", "0.3", "--cancel-grace", "3"};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::string submit(const ServerProcess& s, const std::string& body) {
    const auto r = s.client().request("POST", "/jobs", body);
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return "";
    ids_.push_back(json::parse(r.body)["id"].get<std::string>());
    return ids_.back();
  }
  json wait_terminal(const ServerProcess& s, const std::string& id, std::chrono::seconds limit = 120s) {
    json j;
    EXPECT_TRUE(wait_until(
        [&] {
          j = s.job(id);
          return terminal_state(j["state"]);
        },
        limit))
        << j.dump();
    return j;
  }
  CmdResult jobctl(const ServerProcess& s, std::vector<std::string> args) const {
    std::vector<std::string> argv = {(bin_dir() / "jobctl").string(), "--server", s.url()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_cmd(argv);
  }
  std::string events(const fs::path& ud, const std::string& id) const {
    return slurp(ud / "jobs" / id / "events.jsonl");
  }

  fs::path conf_, root_, model_;
  std::vector<std::string> ids_;
};

// Every file of a packaged model, by relative path.
std::map<std::string, std::string> model_files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = slurp(e.path());
  return out;
}

// A job on the Slurm backend runs as a Slurm job named by its qjobs id and
// packs the same bytes as on the local backend.
TEST_F(Slurm, JobRunsAsASlurmJobAndMatchesTheLocalBackend) {
  const fs::path spec = root_ / "job.yaml";
  std::ofstream(spec) << rtn_spec();
  std::string slurm_job;
  std::string id;
  {
    ServerProcess server(root_ / "ud", slurm_args());
    const auto sub = jobctl(server, {"submit", spec.string()});
    ASSERT_EQ(sub.rc, 0) << sub.err;
    id = trim(sub.out.substr(sub.out.rfind('\n', sub.out.size() - 2) + 1));
    ids_.push_back(id);
    const json job = wait_terminal(server, id);
    ASSERT_EQ(job["state"], "SUCCEEDED") << job.dump();
    EXPECT_EQ(job["backend"], "slurm");
    slurm_job = slurm_id(job);
    ASSERT_FALSE(slurm_job.empty()) << job.dump();
    const auto st = jobctl(server, {"status", id});
    EXPECT_EQ(st.rc, 0);
    EXPECT_NE(st.out.find("SUCCEEDED"), std::string::npos) << st.out;
  }
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = sacct(id);
        return r.size() == 1 && r[0].state == "COMPLETED";
      },
      30s));
  const auto rows = sacct(id);
  EXPECT_EQ(rows[0].job, slurm_job);
  EXPECT_EQ(rows[0].name, id);
  EXPECT_EQ(rows[0].exit_code, "0:0");
  EXPECT_TRUE(fs::exists(root_ / "ud" / "jobs" / id / "logs" / ("slurm-" + slurm_job + ".out")));

  ServerProcess local(root_ / "ud-local", {"--slots", "1"});
  const std::string lid = submit(local, rtn_spec());
  ASSERT_EQ(wait_terminal(local, lid)["state"], "SUCCEEDED");
  const auto a = model_files(root_ / "ud" / "jobs" / id / "model");
  const auto b = model_files(root_ / "ud-local" / "jobs" / lid / "model");
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, bytes] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(bytes == b.at(name)) << name << " differs between the Slurm and the local backend";
  }
}

// 20 jobs on a 2-CPU node: all succeed, Slurm never runs more than 2 at
// once, and among jobs waiting at the same time the higher PRIORITY
// starts first (PRIORITY -> --nice). One squeue per poll, not per job.
TEST_F(Slurm, TwentyJobsOnTwoCpusRespectPriorities) {
  ServerProcess server(root_ / "ud", slurm_args({"--max-inflight", "20"}));
  std::map<std::string, int> prio;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    const int p = (i * 7) % 5 * 10 - 20;  // -20..20, mixed order
    const std::string id = submit(server, rtn_spec(p));
    ASSERT_FALSE(id.empty());
    prio[id] = p;
  }
  for (const auto& [id, p] : prio) EXPECT_EQ(wait_terminal(server, id, 300s)["state"], "SUCCEEDED") << id;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::string names;
  for (const auto& [id, p] : prio) names += (names.empty() ? "" : ",") + id;
  std::vector<AcctRow> rows;
  ASSERT_TRUE(wait_until(
      [&] {
        rows = sacct(names);
        return rows.size() == 20 && std::all_of(rows.begin(), rows.end(), [](const AcctRow& r) { return r.end > 0; });
      },
      30s))
      << rows.size();
  // Concurrency as Slurm accounts it: a sweep over [start, end). sacct
  // counts whole seconds, so a job shorter than a second has start == end
  // and no measurable interval: such jobs are left out of the sweep (they
  // would count as overlapping anything in their second, or as nothing).
  std::vector<std::pair<int64_t, int>> edges;
  for (const auto& r : rows) {
    EXPECT_EQ(r.state, "COMPLETED") << r.name;
    if (r.end <= r.start) continue;
    edges.push_back({r.start, +1});
    edges.push_back({r.end, -1});
  }
  std::sort(edges.begin(), edges.end());  // at equal times the end (-1) comes first
  int running = 0, peak = 0;
  for (const auto& [t, d] : edges) peak = std::max(peak, running += d);
  EXPECT_LE(peak, 2);
  if (!edges.empty()) EXPECT_GE(peak, 1);
  // Priorities: when b was already waiting before a started, a started
  // strictly earlier only if its priority is not lower.
  int compared = 0;
  for (const auto& a : rows)
    for (const auto& b : rows) {
      if (a.start >= b.start || b.submit >= a.start) continue;
      ++compared;
      EXPECT_GE(prio[a.name], prio[b.name])
          << a.name << " (" << prio[a.name] << ") started at " << a.start << " before " << b.name << " ("
          << prio[b.name] << "), waiting since " << b.submit;
    }
  EXPECT_GT(compared, 10) << "too few jobs waited together to show an order";
  // The watch is one squeue per poll for every job, not one per job.
  const auto m = server.client().request("GET", "/metrics").body;
  const auto at = m.find("qjobs_slurm_commands_total{command=\"squeue\"} ");
  ASSERT_NE(at, std::string::npos) << m;
  const double squeues = std::stod(m.substr(at + 45));
  EXPECT_LE(squeues, elapsed / 0.3 + 10) << "squeue calls over " << elapsed << " s";
}

// Cancel through qjobs: CANCELLED within grace + 2 s, Slurm says CANCELLED,
// the worker is gone. scancel from outside: CANCELLED, and the event says
// who.
TEST_F(Slurm, CancelThroughQjobsAndScancelFromOutside) {
  const fs::path ud = root_ / "ud";
  ServerProcess server(ud, slurm_args({"--max-inflight", "4"}), {{"QJOBS_TEST_STEP_DELAY_MS", "3000"}});
  const std::string mine = submit(server, rtn_spec());
  const std::string theirs = submit(server, rtn_spec());
  const int pid = wait_for_worker(ud, mine, 0, 60s);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(server.job(mine)["state"], "RUNNING");
  const auto t0 = std::chrono::steady_clock::now();
  const auto c = jobctl(server, {"cancel", mine});
  EXPECT_EQ(c.rc, 0) << c.err;
  json job;
  ASSERT_TRUE(wait_until(
      [&] {
        job = server.job(mine);
        return job["state"] == "CANCELLED";
      },
      30s))
      << job.dump();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LE(took, 3 + 2) << "grace 3 s + 2 s";
  EXPECT_TRUE(wait_until([&] { return !process_alive(pid); }, 5s)) << "worker " << pid << " still runs";
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = sacct(mine);
        return r.size() == 1 && r[0].state.rfind("CANCELLED", 0) == 0;
      },
      30s));

  ASSERT_GT(wait_for_worker(ud, theirs, 0, 60s), 0);
  const std::string sid = slurm_id(server.job(theirs));
  ASSERT_FALSE(sid.empty());
  ASSERT_EQ(run_cmd({tool("scancel"), sid}).rc, 0);
  job = wait_terminal(server, theirs, 60s);
  EXPECT_EQ(job["state"], "CANCELLED") << job.dump();
  EXPECT_NE(job.value("error", "").find("cancelled in Slurm by root (uid 0)"), std::string::npos) << job.dump();
  EXPECT_NE(events(ud, theirs).find("cancelled in Slurm by root"), std::string::npos);
}

// kill -9 of the worker inside its Slurm job: Slurm says FAILED, qjobs
// submits attempt 2, which resumes at the next block and succeeds.
TEST_F(Slurm, KilledWorkerIsResubmittedAndResumesAtTheNextBlock) {
  const fs::path ud = root_ / "ud";
  const fs::path example = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
  const std::string spec = "MODEL: \"" + example.string() + "\"\nALGORITHM: GPTQ\nDATA_PATH: \"" +
                           (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
                           "\"\ncalibration:\n  n_samples: 8\n  seqlen: 128\nllm:\n  GPTQ:\n    W_BIT: 4\n"
                           "    Q_GROUP_SIZE: 32\n";
  ServerProcess server(ud, slurm_args(), {{"QJOBS_TEST_STEP_DELAY_MS", "300"}});
  const std::string id = submit(server, spec);
  const int pid = wait_for_worker(ud, id, 2, 120s);
  ASSERT_GT(pid, 0);
  const std::string first = slurm_id(server.job(id));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  const json job = wait_terminal(server, id, 300s);
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  EXPECT_EQ(job["attempts"], 2);
  EXPECT_NE(slurm_id(job), first) << "attempt 2 is a new Slurm job";
  const std::string ev = events(ud, id);
  EXPECT_NE(ev.find("\"type\":\"resumed\""), std::string::npos) << ev;
  std::vector<AcctRow> rows;
  ASSERT_TRUE(wait_until(
      [&] {
        rows = sacct(id);
        return rows.size() == 2 && rows[1].end > 0;
      },
      30s));
  EXPECT_EQ(rows[0].state, "FAILED");
  EXPECT_EQ(rows[0].exit_code, "0:9");
  EXPECT_EQ(rows[1].state, "COMPLETED");
}

// kill -9 of the server with 5 jobs in Slurm: the restarted server follows
// them all; every job succeeds on its first attempt, none submitted twice.
TEST_F(Slurm, KilledServerReattachesAndSubmitsNothingTwice) {
  const fs::path ud = root_ / "ud";
  std::vector<std::string> ids;
  {
    ServerProcess server(ud, slurm_args({"--max-inflight", "5"}), {{"QJOBS_TEST_STEP_DELAY_MS", "400"}});
    for (int i = 0; i < 5; ++i) ids.push_back(submit(server, rtn_spec()));
    ASSERT_TRUE(wait_until(
        [&] {
          int running = 0, dispatched = 0;
          for (const auto& id : ids) {
            const json j = server.job(id);
            running += j["state"] == "RUNNING";
            dispatched += !j["handle"].is_null();
          }
          return running >= 2 && dispatched == 5;
        },
        60s));
    server.kill9();
  }
  ServerProcess again(ud, slurm_args({"--max-inflight", "5"}), {{"QJOBS_TEST_STEP_DELAY_MS", "400"}});
  for (const auto& id : ids) {
    const json j = wait_terminal(again, id, 180s);
    EXPECT_EQ(j["state"], "SUCCEEDED") << j.dump();
    EXPECT_EQ(j["attempts"], 1) << id;
  }
  for (const auto& id : ids) {
    std::vector<AcctRow> rows;
    wait_until(
        [&] {
          rows = sacct(id);
          return !rows.empty() && rows.back().end > 0;
        },
        30s);
    EXPECT_EQ(rows.size(), 1u) << id << " was submitted " << rows.size() << " times";
  }
  EXPECT_NE(slurp(again.stderr_path()).find("recover: watching slurm:"), std::string::npos);
}

// A server killed between sbatch and storing the handle: the Slurm job
// exists (named by the qjobs id, commented with the attempt) but the store
// has the job QUEUED with no handle. The restarted server adopts it instead
// of submitting a second one. The gap is made real: a local server holds
// the job queued, is killed, and the submission it "made" is done by hand,
// exactly as SlurmDispatcher submits.
TEST_F(Slurm, SubmissionTheStoreNeverRecordedIsAdoptedNotRepeated) {
  const fs::path ud = root_ / "ud";
  const fs::path hold = root_ / "hold.sh";
  std::ofstream(hold) << "#!/bin/sh\nexec sleep 600\n";
  fs::permissions(hold, fs::perms::owner_all);
  std::string id;
  {
    ServerProcess local(ud, {"--slots", "1", "--worker", hold.string()});
    const std::string blocker = submit(local, rtn_spec());
    id = submit(local, rtn_spec());
    ASSERT_TRUE(wait_until([&] { return local.job(blocker)["state"] == "RUNNING"; }, 30s));
    ASSERT_EQ(local.job(id)["state"], "QUEUED");
    // The server makes a job's folder from its row before it submits it
    // (job_folder.hpp); asking for its events makes it the same way.
    ASSERT_EQ(local.client().request("GET", "/jobs/" + id + "/events").status, 200);
    local.kill9();
  }
  const fs::path dir = ud / "jobs" / id;
  const std::string script = "#!/bin/sh\nexport QJOBS_ATTEMPT=1 QJOBS_JOB_ID=" + id +
                             "\nexport CUDA_VISIBLE_DEVICES=\nexec '" + (bin_dir() / "qjobs-worker").string() +
                             "' run '" + (dir / "spec.yaml").string() + "' --job-dir '" + dir.string() + "'\n";
  std::ofstream(root_ / "by-hand.sh") << script;
  const auto sb = run_cmd({tool("sbatch"), "--parsable", "--job-name=" + id, "--comment=qjobs attempt 1",
                           "--output=" + (dir / "logs" / "slurm-%j.out").string(), "--no-requeue",
                           (root_ / "by-hand.sh").string()});
  ASSERT_EQ(sb.rc, 0) << sb.err;
  const std::string by_hand = trim(sb.out);

  ServerProcess server(ud, slurm_args());
  const json job = wait_terminal(server, id, 120s);
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  EXPECT_EQ(job["attempts"], 1);
  EXPECT_EQ(slurm_id(job), by_hand);
  EXPECT_NE(events(ud, id).find("submitted before the server stopped"), std::string::npos) << events(ud, id);
  std::vector<AcctRow> rows;
  wait_until(
      [&] {
        rows = sacct(id);
        return !rows.empty() && rows.back().end > 0;
      },
      30s);
  EXPECT_EQ(rows.size(), 1u) << "submitted again";
}

// slurmctld down at submission: the job is accepted (201), stays QUEUED
// with an event that says why, the API keeps answering, and the job is
// submitted and succeeds once slurmctld is back.
TEST_F(Slurm, ControllerDownAtSubmissionKeepsTheJobQueued) {
  const fs::path ud = root_ / "ud";
  const fs::path pidfile = conf_.parent_path() / "run" / "slurmctld.pid";
  ASSERT_TRUE(fs::exists(pidfile)) << "the controller's pid file (scripts/slurm-local.sh)";
  ServerProcess server(ud, slurm_args());
  const int ctld = std::stoi(slurp(pidfile));
  ASSERT_EQ(::kill(ctld, SIGTERM), 0);
  ASSERT_TRUE(wait_until([&] { return !process_alive(ctld); }, 20s));
  struct Restart {  // slurmctld comes back whatever the test does
    fs::path conf;
    ~Restart() {
      if (run_cmd({tool("timeout"), "5", "scontrol", "ping"}).rc == 0) return;
      run_cmd({tool("slurmctld"), "-f", conf.string()});
      wait_until([&] { return run_cmd({tool("timeout"), "5", "scontrol", "ping"}).rc == 0; }, std::chrono::seconds(30));
    }
  } restart{conf_};

  const std::string id = submit(server, rtn_spec());
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return events(ud, id).find("cannot submit to slurm yet") != std::string::npos; }, 60s))
      << events(ud, id);
  json job = server.job(id);
  EXPECT_EQ(job["state"], "QUEUED");
  EXPECT_TRUE(job["handle"].is_null());
  for (const auto* path : {"/healthz", "/jobs", "/metrics"})
    EXPECT_EQ(server.client().request("GET", path).status, 200);
  EXPECT_EQ(server.client().request("GET", "/jobs/" + id).status, 200);
  EXPECT_TRUE(process_alive(server.pid()));

  run_cmd({tool("slurmctld"), "-f", conf_.string()});
  ASSERT_TRUE(wait_until([&] { return run_cmd({tool("timeout"), "5", "scontrol", "ping"}).rc == 0; }, 30s));
  job = wait_terminal(server, id, 180s);
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  EXPECT_EQ(job["attempts"], 1);
}

// Options Slurm refuses (here a partition it does not have) would fail
// every job: the server says so at start, naming Slurm's reason, instead.
TEST_F(Slurm, OptionsSlurmRefusesStopTheServerAtStart) {
  try {
    ServerProcess server(root_ / "ud", slurm_args({"--slurm-partition", "no-such-partition"}));
    ADD_FAILURE() << "the server started with a partition Slurm does not have";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("Slurm refuses jobs with these --slurm-* options"), std::string::npos) << what;
    EXPECT_NE(to_lower(what).find("partition"), std::string::npos) << what;
  }
  ServerProcess fine(root_ / "ud2", slurm_args({"--slurm-partition", "qjobs"}));
  EXPECT_EQ(fine.client().request("GET", "/healthz").status, 200);
}

// --slurm-gres gpu: CUDA_ID's device count becomes --gres=gpu:N; Slurm
// allocates and accounts that many (the fake GPUs of slurm-local.sh --gpus)
// and hands them to the worker in CUDA_VISIBLE_DEVICES, which this CPU-only
// worker refuses by name rather than computing on the CPU.
TEST_F(Slurm, DeviceCountBecomesAGresRequest) {
  const auto gres = run_cmd({tool("sinfo"), "--noheader", "--Node", "--format=%G"});
  if (gres.out.find("gpu:") == std::string::npos) GTEST_SKIP() << "the node has no GPUs (slurm-local.sh --gpus 2)";
  const fs::path ud = root_ / "ud";
  ServerProcess server(ud, slurm_args({"--slurm-gres", "gpu"}));
  const std::string id = submit(server, rtn_spec() + "CUDA_ID: \"0,1\"\nMAX_ATTEMPTS: 1\n");
  const json job = wait_terminal(server, id, 60s);
  EXPECT_EQ(job["state"], "FAILED") << job.dump();
  const std::string error = job.value("error", "");
  EXPECT_NE(error.find("CUDA_VISIBLE_DEVICES=0,1"), std::string::npos) << error;
  const std::string sid = slurm_id(job);
  std::string tres;
  ASSERT_TRUE(wait_until(
      [&] {
        tres = run_cmd(
                   {tool("sacct"), "--noheader", "--parsable2", "--allocations", "--jobs=" + sid, "--format=AllocTRES"})
                   .out;
        return tres.find("gres/gpu=") != std::string::npos;
      },
      30s))
      << tres;
  EXPECT_NE(tres.find("gres/gpu=2"), std::string::npos) << tres;
}

}  // namespace
}  // namespace qjobs::testing

namespace qjobs::testing {
namespace {

// Issue 29: Slurm across hosts. A cluster of three (scripts/slurm-local.sh
// --hosts 2: slurmctld and slurmdbd on "qjctl", a slurmd on each of
// "qjnode1" and "qjnode2", each host a network namespace with its own
// address), the server on this machine's own network as a login node, the
// job folders shared at one path. QJOBS_SLURM_HOSTS_CONF names it (test.sh
// starts it); without one these tests skip, except under CI.
class SlurmHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* conf = std::getenv("QJOBS_SLURM_HOSTS_CONF");
    const char* dir = std::getenv("QJOBS_SLURM_HOSTS_DIR");
    const bool up = conf && dir && fs::exists(conf) &&
                    run_cmd({tool("timeout"), "10", tool("scontrol"), "ping"}, {{"SLURM_CONF", conf}}).rc == 0;
    if (!up) {
      if (slurm_required())
        FAIL() << "no three-host Slurm (QJOBS_SLURM_HOSTS_CONF): scripts/test.sh starts one with "
                  "scripts/slurm-local.sh start --hosts 2";
      GTEST_SKIP() << "no three-host Slurm: scripts/slurm-local.sh start --dir D --hosts 2, then export "
                      "QJOBS_SLURM_HOSTS_CONF=D/slurm.conf QJOBS_SLURM_HOSTS_DIR=D";
    }
    conf_ = conf;
    dir_ = dir;
    root_ = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    if (root_.empty()) return;
    for (const auto& id : ids_) slurm({"scancel", "--name=" + id});
    if (!lost_.empty())
      run_cmd({(fs::path(QJOBS_SOURCE_DIR) / "scripts/slurm-local.sh").string(), "restore-host", lost_, "--dir",
               dir_.string()});
    remove_test_dir(root_);
  }
  CmdResult slurm(std::vector<std::string> argv) const {
    argv[0] = tool(argv[0]);
    return run_cmd(argv, {{"SLURM_CONF", conf_.string()}, {"TZ", "UTC"}});
  }
  // The node a Slurm job ran or runs on, from sacct.
  std::string node_of(const std::string& slurm_job) const {
    const auto r =
        slurm({"sacct", "--noheader", "--parsable2", "--allocations", "--jobs=" + slurm_job, "--format=NodeList"});
    return std::string(trim(r.out));
  }
  // Every Slurm job of a qjobs job: its id, state and node, in order.
  std::vector<std::vector<std::string>> attempts(const std::string& id) const {
    const auto r = slurm({"sacct", "--noheader", "--parsable2", "--allocations", "--name=" + id,
                          "--starttime=now-1days", "--format=JobIDRaw,State,NodeList"});
    std::vector<std::vector<std::string>> rows;
    for (const auto& line : split(r.out, '\n'))
      if (auto f = split(trim(line), '|'); f.size() == 3) rows.push_back(f);
    return rows;
  }
  json wait_terminal(const ServerProcess& s, const std::string& id, std::chrono::seconds limit) {
    json j;
    EXPECT_TRUE(wait_until(
        [&] {
          j = s.job(id);
          return terminal_state(j["state"]);
        },
        limit))
        << j.dump();
    return j;
  }
  std::map<std::string, std::string> env(std::map<std::string, std::string> more = {}) const {
    more["SLURM_CONF"] = conf_.string();
    return more;
  }

  fs::path conf_, dir_, root_;
  std::vector<std::string> ids_;
  std::string lost_;
};

// Two GPTQ jobs, one per node (each asks for a node's two CPUs). The node
// of one is lost mid-job (every process on it killed, its link down) while
// the server is killed too; the restarted server adopts both, sees the lost
// attempt end (NODE_FAIL), resubmits it, and it runs on the other node and
// resumes at its next block: both jobs end with the same perplexity, the
// one of an uninterrupted run.
TEST_F(SlurmHosts, JobsSpreadOverNodesAndANodeLostMidJobIsResumedOnTheOther) {
  const fs::path ud = root_ / "ud";
  const fs::path example = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
  const std::string spec = "MODEL: \"" + example.string() + "\"\nALGORITHM: GPTQ\nDATA_PATH: \"" +
                           (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/calib.jsonl").string() +
                           "\"\nEXPORT_FORMAT: fake_quant\ncalibration:\n  n_samples: 8\n  seqlen: 128\n"
                           "llm:\n  GPTQ:\n    W_BIT: 4\n    Q_GROUP_SIZE: 32\n"
                           "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" +
                           (fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv/test.jsonl").string() +
                           "\"\n      seqlen: 128\n      num_samples: 4\n";
  const std::vector<std::string> args = {"--dispatcher",  "slurm", "--slurm-poll",   "0.5",
                                         "--slurm-extra", "-c 2",  "--max-inflight", "2"};
  // Four blocks of 3 s each: both jobs are seen mid-quantization, with a
  // block done, before either can finish.
  const std::map<std::string, std::string> delay = env({{"QJOBS_TEST_STEP_DELAY_MS", "3000"}});
  std::vector<std::string> ids;
  std::map<std::string, std::string> node;  // qjobs id -> node of its first attempt
  std::string victim, survivor;
  {
    ServerProcess server(ud, args, delay);
    for (int i = 0; i < 2; ++i) {
      const auto r = server.client().request("POST", "/jobs", spec);
      ASSERT_EQ(r.status, 201) << r.body;
      ids.push_back(json::parse(r.body)["id"]);
      ids_.push_back(ids.back());
    }
    // Both at once (one after the other, the second could be past its
    // quantization before the first is seen).
    const auto mid_quantization = [&](const std::string& id) {
      const auto st = JobDir(ud / "jobs" / id).read_status();
      return st && st->value("stage", "") == "quantize" && st->value("done", 0) >= 1;
    };
    ASSERT_TRUE(wait_until([&] { return mid_quantization(ids[0]) && mid_quantization(ids[1]); }, 180s));
    for (const auto& id : ids) node[id] = node_of(slurm_id(server.job(id)));
    ASSERT_NE(node[ids[0]], node[ids[1]]) << "one job per node: " << node[ids[0]];
    for (const auto& id : ids) EXPECT_TRUE(node[id] == "qjnode1" || node[id] == "qjnode2") << node[id];
    victim = node[ids[0]] == "qjnode1" ? ids[0] : ids[1];
    survivor = victim == ids[0] ? ids[1] : ids[0];
    server.kill9();
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto lose = run_cmd({(fs::path(QJOBS_SOURCE_DIR) / "scripts/slurm-local.sh").string(), "lose-host", "qjnode1",
                             "--dir", dir_.string()});
  ASSERT_EQ(lose.rc, 0) << lose.err;
  lost_ = "qjnode1";
  ServerProcess again(ud, args, delay);
  json lost_job, other;
  EXPECT_TRUE(wait_until(
      [&] {
        lost_job = again.job(victim);
        return lost_job.value("attempts", 0) >= 2;
      },
      180s))
      << lost_job.dump();
  const double detected_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lost_job = wait_terminal(again, victim, 400s);
  other = wait_terminal(again, survivor, 400s);
  std::cout << "node lost -> attempt 2 submitted in " << detected_s << " s\n";
  EXPECT_EQ(lost_job["state"], "SUCCEEDED") << lost_job.dump();
  EXPECT_EQ(other["state"], "SUCCEEDED") << other.dump();
  EXPECT_EQ(other["attempts"], 1) << "the job on the node that stayed was adopted, not resubmitted";
  EXPECT_EQ(lost_job["attempts"], 2);
  const std::string ev = slurp(ud / "jobs" / victim / "events.jsonl");
  EXPECT_NE(ev.find("\"type\":\"resumed\""), std::string::npos) << ev;
  EXPECT_NE(ev.find("NODE_FAIL"), std::string::npos) << ev;
  std::vector<std::vector<std::string>> rows;
  EXPECT_TRUE(wait_until(
      [&] {
        rows = attempts(victim);
        return rows.size() == 2 && rows[1][1] == "COMPLETED";
      },
      60s));
  if (rows.size() == 2) {
    EXPECT_EQ(rows[0][1], "NODE_FAIL");
    EXPECT_EQ(rows[0][2], "qjnode1");
    EXPECT_EQ(rows[1][2], "qjnode2");
  }
  // The resumed job is the same model as the one that ran through.
  const auto ppl = [&](const std::string& id) {
    return json::parse(slurp(ud / "jobs" / id / "report.json"))["eval"]["quantized"]["kjv"]["ppl"].get<double>();
  };
  EXPECT_NEAR(ppl(victim), ppl(survivor), 1e-9 * ppl(survivor));
  EXPECT_NE(slurp(again.stderr_path()).find("recover: watching slurm:"), std::string::npos);
}

}  // namespace
}  // namespace qjobs::testing
