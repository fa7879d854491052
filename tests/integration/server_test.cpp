// End to end: the real qjobs-server on a loopback port, the real jobctl, real
// qjobs-worker processes, on small models the tests make.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "spec/algorithm_catalog.hpp"
#include "spec/catalog_docs.hpp"
#include "common/job_dir.hpp"
#include "integration/harness.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/safetensors.hpp"

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

std::string jobctl() { return (bin_dir() / "jobctl").string(); }

// Round-to-nearest written out from the formulas, independently of
// jobs/quant: float32 arithmetic, half-to-even rounding (nearbyintf).
std::vector<float> hand_rtn(const std::vector<float>& w, int64_t rows, int64_t cols, int bits, int64_t group,
                            bool asym) {
  std::vector<float> out(w.size());
  // A width the group size does not divide is quantized per output channel,
  // in every export form (issue 27: no format holds a short last group).
  const int64_t g = group <= 0 || cols % group != 0 ? cols : group;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t start = 0; start < cols; start += g) {
      const int64_t end = std::min(cols, start + g);
      float mx = -INFINITY, mn = INFINITY, amax = 0;
      for (int64_t c = start; c < end; ++c) {
        const float v = w[r * cols + c];
        mx = std::max(mx, v);
        mn = std::min(mn, v);
        amax = std::max(amax, std::fabs(v));
      }
      if (asym) {
        const float qmax = static_cast<float>((1 << bits) - 1);
        const float scale = (mx - mn) / qmax;
        const float zero = std::clamp(std::nearbyint(-mn / scale), 0.0f, qmax);
        for (int64_t c = start; c < end; ++c) {
          const float q = std::clamp(std::nearbyint(w[r * cols + c] / scale) + zero, 0.0f, qmax);
          out[r * cols + c] = (q - zero) * scale;
        }
      } else {
        const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
        const float scale = amax / qmax;
        for (int64_t c = start; c < end; ++c) {
          const float q = std::clamp(std::nearbyint(w[r * cols + c] / scale), -qmax - 1, qmax);
          out[r * cols + c] = q * scale;
        }
      }
    }
  }
  return out;
}

std::vector<float> values(const at::Tensor& t) {
  const auto c = t.to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

std::map<std::string, at::Tensor> load_dir(const fs::path& dir) {
  std::map<std::string, at::Tensor> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    const auto f = model::SafetensorsFile::open(e.path());
    for (const auto& i : f.tensors()) out[i.name] = f.tensor(i.name).clone();
  }
  return out;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    model_ = root_ / "model";
    model::RandomModelOptions o;
    o.hidden = 64;
    o.intermediate = 100;  // down_proj: 100 = 3 * 32 + 4, ragged: per output channel
    o.layers = 2;
    o.vocab = 128;
    o.shards = 2;
    o.seed = 7;
    model::write_random_llama(model_, o);
    std::ofstream(model_ / "tokenizer_config.json") << R"({"add_bos_token": true})";
  }
  void TearDown() override {
    // Workers left behind by a killed server must not outlive the test.
    for (const auto& pid : stray_)
      if (process_alive(pid)) ::kill(pid, SIGKILL);
    remove_test_dir(root_);
  }

  fs::path write_spec(const std::string& name, const std::string& body) {
    const fs::path p = root_ / name;
    std::ofstream(p) << body;
    return p;
  }
  std::string rtn_spec(int bits = 4, int group = 32, bool zero_point = true) {
    // fake_quant: the weights are compared with hand-computed ones as floats
    // (the packed forms are checked against fake_quant in runtime_test).
    return "MODEL: \"" + model_.string() +
           "\"\nALGORITHM: RTN\nJOB_ID: t\nEXPORT_FORMAT: fake_quant\nllm:\n  RTN:\n    W_BIT: " +
           std::to_string(bits) + "\n    Q_GROUP_SIZE: " + std::to_string(group) +
           "\n    ZERO_POINT: " + (zero_point ? "true" : "false") + "\n";
  }
  std::string submit(const ServerProcess& s, const std::string& body) {
    const auto r = s.client().request("POST", "/jobs", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body)["id"].get<std::string>();
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
  // The worker pid once the job's worker has reported progress in `stage`.
  int wait_worker(const ServerProcess& s, const std::string& id, const fs::path& user_data) {
    const int pid = wait_for_worker(user_data, id, 2);
    stray_.push_back(pid);
    return pid;
  }

  void check_rtn_output(const fs::path& packaged, int bits, int group, bool asym) {
    const auto original = load_dir(model_);
    const auto quantized = load_dir(packaged);
    ASSERT_EQ(original.size(), quantized.size());
    int checked = 0;
    for (const auto& [name, w] : original) {
      const auto& q = quantized.at(name);
      ASSERT_EQ(q.scalar_type(), w.scalar_type()) << name;
      const bool linear = name.find("_proj.weight") != std::string::npos;
      if (!linear) {
        EXPECT_TRUE(at::equal(q, w)) << name << " must be left alone";
        continue;
      }
      const auto want = hand_rtn(values(w), w.size(0), w.size(1), bits, group, asym);
      const auto got = values(q);
      ASSERT_EQ(got.size(), want.size());
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < got.size(); ++i) mismatches += got[i] != want[i];
      EXPECT_EQ(mismatches, 0u) << name;
      ++checked;
    }
    EXPECT_EQ(checked, 14);
  }

  fs::path root_;
  fs::path model_;
  std::vector<int> stray_;
};

TEST_F(ServerTest, RtnJobThroughJobctlProducesHandComputedWeights) {
  ServerProcess server(root_ / "ud", {"--slots", "1"});
  const auto spec = write_spec("job.yaml", rtn_spec(4, 32, true));
  const auto r = run_cmd({jobctl(), "--server", server.url(), "submit", spec.string(), "--wait"});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const std::string id = r.out.substr(0, r.out.find('\n'));
  const json job = server.job(id);
  EXPECT_EQ(job["state"], "SUCCEEDED");
  EXPECT_EQ(job["attempts"], 1);

  const fs::path dir = root_ / "ud" / "jobs" / id;
  check_rtn_output(dir / "model", 4, 32, true);
  const auto config = json::parse(read_file(dir / "model" / "config.json"));
  EXPECT_FALSE(config.contains("quantization_config")) << "transformers would refuse an unknown quant_method";
  EXPECT_EQ(config["qjobs_quantization"]["bits"], 4);
  EXPECT_EQ(config["qjobs_quantization"]["group_size"], 32);
  EXPECT_TRUE(fs::exists(dir / "model" / "tokenizer_config.json"));
  EXPECT_TRUE(fs::exists(dir / "model" / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "report.json"));
  // The estimate made at submission, beside what the job took. No dry run
  // measured rates yet, so it has no time; memory, disk and output it has.
  const auto report = json::parse(read_file(dir / "report.json"));
  const auto& est = report["estimate"];
  ASSERT_TRUE(est.is_object()) << report.dump();
  EXPECT_TRUE(est["seconds"].is_null());
  EXPECT_DOUBLE_EQ(est["measured"]["output_bytes"].get<double>(),
                   report["size_mib"]["after"].get<double>() * 1024 * 1024);
  // The packed safetensors hold the bytes counted and their headers.
  const double packed = est["output_bytes"].get<double>(), written = est["measured"]["output_bytes"].get<double>();
  EXPECT_GT(written, packed);
  EXPECT_LT(written, packed * 1.5);
  EXPECT_GT(est["measured"]["host_bytes"].get<double>(), 0.0);
  EXPECT_NE(read_file(dir / "report.md").find("## Estimated before the start"), std::string::npos);

  // Artifacts with sha256 that coreutils agrees with.
  const auto listed = run_cmd({jobctl(), "--server", server.url(), "--json", "artifacts", id});
  ASSERT_EQ(listed.rc, 0) << listed.err;
  const auto artifacts = json::parse(listed.out)["artifacts"];
  std::set<std::string> paths;
  for (const auto& a : artifacts) {
    paths.insert(a["path"]);
    const auto sum = run_cmd({"/usr/bin/sha256sum", (dir / a["path"].get<std::string>()).string()});
    EXPECT_EQ(sum.out.substr(0, 64), a["sha256"].get<std::string>()) << a["path"];
    EXPECT_EQ(a["size"].get<uint64_t>(), fs::file_size(dir / a["path"].get<std::string>()));
  }
  for (const char* p : {"spec.yaml", "spec.json", "status.json", "events.jsonl", "logs/worker.log", "model/config.json",
                        "model/model-00001-of-00002.safetensors", "report.md"})
    EXPECT_TRUE(paths.count(p)) << p;

  // Download everything and compare bytes.
  const auto dl = run_cmd({jobctl(), "--server", server.url(), "download", id, "-o", (root_ / "dl").string()});
  ASSERT_EQ(dl.rc, 0) << dl.err;
  EXPECT_EQ(read_file(root_ / "dl" / "model" / "model-00002-of-00002.safetensors"),
            read_file(dir / "model" / "model-00002-of-00002.safetensors"));

  // Events and logs through jobctl.
  const auto ev = run_cmd({jobctl(), "--server", server.url(), "events", id});
  ASSERT_EQ(ev.rc, 0);
  std::set<std::string> stages;
  std::istringstream lines(ev.out);
  for (std::string line; std::getline(lines, line);) {
    const auto e = json::parse(line);
    if (e["type"] == "stage") stages.insert(e["stage"]);
  }
  EXPECT_EQ(stages, (std::set<std::string>{"load", "quantize", "package", "report"}));
  const auto tail = run_cmd({jobctl(), "--server", server.url(), "logs", id, "--tail", "1"});
  EXPECT_EQ(std::count(tail.out.begin(), tail.out.end(), '\n'), 1) << tail.out;
  const auto follow = run_cmd({jobctl(), "--server", server.url(), "logs", id, "-f"});
  EXPECT_NE(follow.out.find("job done"), std::string::npos);

  // Symmetric per-channel 3-bit, the other branch of the formula.
  const auto spec2 = write_spec("job2.yaml", rtn_spec(3, -1, false));
  const auto r2 = run_cmd({jobctl(), "--server", server.url(), "submit", spec2.string(), "--wait"});
  ASSERT_EQ(r2.rc, 0) << r2.err;
  check_rtn_output(root_ / "ud" / "jobs" / r2.out.substr(0, r2.out.find('\n')) / "model", 3, -1, false);
}

// Issue 16: a MODEL folder that is not there is refused at submission (it
// used to be accepted, fail at start, and even try the hub); nothing is stored.
TEST_F(ServerTest, MissingModelFolderIsRefusedAtSubmission) {
  ServerProcess server(root_ / "ud");
  const auto spec = write_spec("job.yaml", "ALGORITHM: RTN\nMODEL: \"" + (root_ / "missing").string() + "\"\n");
  const auto r = run_cmd({jobctl(), "--server", server.url(), "submit", spec.string(), "--wait"});
  EXPECT_EQ(r.rc, 5) << r.out << r.err;
  EXPECT_NE(r.err.find("MODEL:2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no model folder " + (root_ / "missing").string()), std::string::npos) << r.err;
  EXPECT_TRUE(json::parse(server.client().request("GET", "/jobs").body)["jobs"].empty());
}

TEST_F(ServerTest, KilledWorkerIsRequeuedAndSucceedsOnTheSecondAttempt) {
  ServerProcess server(root_ / "ud", {"--slots", "1"}, {{"QJOBS_TEST_STEP_DELAY_MS", "150"}});
  const std::string id = submit(server, rtn_spec());
  const int pid = wait_worker(server, id, root_ / "ud");
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  const json job = wait_terminal(server, id);
  EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
  EXPECT_EQ(job["attempts"], 2);
  check_rtn_output(root_ / "ud" / "jobs" / id / "model", 4, 32, true);
}

TEST_F(ServerTest, KilledServerLosesNoJobAndLeavesNoneRunning) {
  const std::map<std::string, std::string> env = {{"QJOBS_TEST_STEP_DELAY_MS", "150"}};
  std::vector<std::string> ids;
  int adopted_pid = 0, orphan_pid = 0;
  {
    ServerProcess server(root_ / "ud", {"--slots", "2"}, env);
    for (int i = 0; i < 4; ++i) ids.push_back(submit(server, rtn_spec()));
    adopted_pid = wait_worker(server, ids[0], root_ / "ud");
    orphan_pid = wait_worker(server, ids[1], root_ / "ud");
    ASSERT_GT(adopted_pid, 0);
    ASSERT_GT(orphan_pid, 0);
    server.kill9();
  }
  // While the server is down one worker dies too; the other keeps going.
  ::kill(orphan_pid, SIGKILL);
  ServerProcess server(root_ / "ud", {"--slots", "2"}, env);
  for (const auto& id : ids) {
    const json job = wait_terminal(server, id);
    EXPECT_EQ(job["state"], "SUCCEEDED") << job.dump();
    EXPECT_TRUE(fs::exists(root_ / "ud" / "jobs" / id / "model" / "config.json"));
  }
  EXPECT_EQ(server.job(ids[0])["attempts"], 1);  // adopted, never restarted
  EXPECT_EQ(server.job(ids[1])["attempts"], 2);  // lost while the server was down
  const auto list = json::parse(server.client().request("GET", "/jobs?limit=100").body);
  EXPECT_EQ(list["jobs"].size(), ids.size());
}

TEST_F(ServerTest, CancelStopsARunningJobWithinTheGracePeriod) {
  ServerProcess server(root_ / "ud", {"--slots", "1", "--cancel-grace", "2"}, {{"QJOBS_TEST_STEP_DELAY_MS", "300"}});
  const std::string id = submit(server, rtn_spec());
  const int pid = wait_worker(server, id, root_ / "ud");
  ASSERT_GT(pid, 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_cmd({jobctl(), "--server", server.url(), "cancel", id});
  EXPECT_EQ(r.rc, 0) << r.err;
  const json job = wait_terminal(server, id, 10s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(job["state"], "CANCELLED");
  EXPECT_LE(took, 3.0);
  EXPECT_FALSE(process_alive(pid));
  // Cancel is idempotent, and a queued job cancels at once.
  EXPECT_EQ(run_cmd({jobctl(), "--server", server.url(), "cancel", id}).rc, 0);
  EXPECT_EQ(server.job(id)["state"], "CANCELLED");
  // A cancelled job has a report (issue 31: it was a 404): the state, the
  // stage it was in, and the log's end.
  const auto rep = run_cmd({jobctl(), "--server", server.url(), "report", id});
  ASSERT_EQ(rep.rc, 0) << rep.err;
  EXPECT_NE(rep.out.find("| state | CANCELLED |"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("## Cancelled"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("End of logs/worker.log"), std::string::npos) << rep.out;
  EXPECT_EQ(rep.out.find("error type"), std::string::npos) << rep.out;
  // A job cancelled while queued behind another: at once, with its report.
  const std::string running = submit(server, rtn_spec()), queued = submit(server, rtn_spec());
  ASSERT_EQ(run_cmd({jobctl(), "--server", server.url(), "cancel", queued}).rc, 0);
  EXPECT_EQ(server.job(queued)["state"], "CANCELLED");
  const auto qrep = run_cmd({jobctl(), "--server", server.url(), "--json", "report", queued});
  ASSERT_EQ(qrep.rc, 0) << qrep.err;
  EXPECT_EQ(json::parse(qrep.out)["reason"], "cancelled while queued") << qrep.out;
  EXPECT_EQ(run_cmd({jobctl(), "--server", server.url(), "cancel", running}).rc, 0);
  wait_terminal(server, running, 10s);
}

// Issue 31: `list --watch` into a file or pipe appended a whole table every
// 2 s (263 KB in 5 minutes); it now writes one when a job's state or
// progress moved. A job held 20 s in one step: one table in 9 s, not four.
TEST_F(ServerTest, WatchIntoAFileWritesOnlyWhatMoved) {
  ServerProcess server(root_ / "ud", {"--slots", "1", "--cancel-grace", "1"}, {{"QJOBS_TEST_STEP_DELAY_MS", "20000"}});
  const std::string id = submit(server, rtn_spec());
  ASSERT_TRUE(wait_until([&] { return server.job(id)["state"] == "RUNNING"; }, 30s));
  const auto w = run_cmd({"/usr/bin/timeout", "9", jobctl(), "--server", server.url(), "list", "--watch"});
  EXPECT_EQ(w.rc, 124) << "still watching a running job: " << w.out << w.err;
  std::size_t tables = 0;
  for (std::size_t at = w.out.find("ID "); at != std::string::npos; at = w.out.find("ID ", at + 1))
    if (at == 0 || w.out[at - 1] == '\n') ++tables;
  EXPECT_GE(tables, 1u) << w.out;
  EXPECT_LE(tables, 2u) << w.out;
  EXPECT_EQ(run_cmd({jobctl(), "--server", server.url(), "cancel", id}).rc, 0);
  wait_terminal(server, id, 10s);
}

TEST_F(ServerTest, WorkerIgnoringSigtermIsKilledAfterGrace) {
  // A worker that ignores SIGTERM (a stand-in script) must still be gone
  // within grace + 1 s.
  const fs::path script = root_ / "stubborn-worker";
  std::ofstream(script) << "#!/bin/sh\ntrap '' TERM\necho $$ > \"$4/stubborn.pid\"\nsleep 60\n";
  fs::permissions(script, fs::perms::owner_all);
  ServerProcess server(root_ / "ud", {"--slots", "1", "--cancel-grace", "1", "--worker", script.string()});
  const std::string id = submit(server, rtn_spec());
  const fs::path pid_file = root_ / "ud" / "jobs" / id / "stubborn.pid";
  ASSERT_TRUE(wait_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }, 10s));
  const int pid = std::stoi(read_file(pid_file));
  stray_.push_back(pid);
  const auto t0 = std::chrono::steady_clock::now();
  server.client().request("POST", "/jobs/" + id + "/cancel");
  const json job = wait_terminal(server, id, 10s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(job["state"], "CANCELLED");
  EXPECT_LE(took, 2.0 + 0.5);
  EXPECT_TRUE(wait_until([&] { return !process_alive(pid); }, 2s));
}

// POST /jobs?dry_run=1 and `jobctl validate`: the whole submission check,
// including the export against the model's config.json, and nothing stored.
TEST_F(ServerTest, DryRunChecksTheExportAgainstTheModelAndStoresNothing) {
  const fs::path ud = root_ / "ud";
  ServerProcess server(ud, {"--slots", "1"});
  auto client = server.client();
  const fs::path m = root_ / "shapes";
  fs::create_directories(m);
  std::ofstream(m / "config.json")
      << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100})";
  std::ofstream(m / "model.safetensors") << "";  // only looked for: nothing runs
  const std::string good = "MODEL: \"" + m.string() + "\"\nALGORITHM: RTN\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n";
  const std::string bad =
      "MODEL: \"" + m.string() + "\"\nALGORITHM: RTN\nEXPORT_FORMAT: awq\nllm:\n  RTN:\n    Q_GROUP_SIZE: 64\n";
  const auto ok = client.request("POST", "/jobs?dry_run=1", good);
  ASSERT_EQ(ok.status, 200) << ok.body;
  const auto okj = json::parse(ok.body);
  EXPECT_EQ(okj["valid"], true);
  EXPECT_EQ(okj["spec"]["EXPORT_FORMAT"], "compressed-tensors");
  ASSERT_EQ(okj["warnings"].size(), 1u) << ok.body;
  EXPECT_NE(okj["warnings"][0].get<std::string>().find("mlp.down_proj"), std::string::npos);
  // What it will cost (spec/estimate.hpp), with the rates the worker
  // measured on this machine at this first dry run, kept for the next.
  const auto& est = okj["estimate"];
  ASSERT_TRUE(est.is_object()) << ok.body;
  EXPECT_EQ(est["rates"]["device"], "cpu");
  EXPECT_GT(est["rates"]["gemm_gflops"].get<double>(), 0.0);
  EXPECT_GT(est["rates"]["elementwise_per_s"].get<double>(), 0.0);
  const auto kept = json::parse(read_file(ud / "device_rates.json"));
  EXPECT_EQ(kept["cpu"]["gemm_gflops"], est["rates"]["gemm_gflops"]);
  EXPECT_TRUE(est["seconds"].is_number()) << est.dump();
  // Float32, untied, 2 layers: embeddings and head 2 * 100 * 128 * 4 =
  // 102400; Linears per layer 128*128 * 2 + 128*64 * 2 + 3 * 128*352 = 184320.
  EXPECT_EQ(est["original_bytes"], 102400 + 2 * 184320 * 4);
  // W4 g64 with zero points (2-byte scale, 4-bit zero per group), down_proj
  // per output channel (352 is not a multiple of 64): per layer
  //   q, o 8192 + 128*2*2.5; k, v 4096 + 64*2*2.5; gate, up 22528 + 352*2*2.5;
  //   down 22528 + 128*2.5 = 97920.
  EXPECT_EQ(est["output_bytes"], 102400 + 2 * 97920);
  EXPECT_EQ(est["disk_bytes"], est["output_bytes"]);  // RTN keeps no calibration state
  const auto again = json::parse(client.request("POST", "/jobs?dry_run=1", good).body);
  EXPECT_EQ(again["estimate"]["rates"], est["rates"]);
  const auto no = client.request("POST", "/jobs?dry_run=1", bad);
  ASSERT_EQ(no.status, 400) << no.body;
  const auto d = json::parse(no.body)["details"][0];
  EXPECT_EQ(d["path"], "llm.RTN.Q_GROUP_SIZE");
  EXPECT_EQ(d["line"], 6);
  EXPECT_NE(d["message"].get<std::string>().find("352 inputs"), std::string::npos);
  // The same through jobctl: exit 0 with the warning, 5 with the place of the problem.
  std::ofstream(root_ / "good.yaml") << good;
  std::ofstream(root_ / "bad.yaml") << bad;
  const std::string jobctl = (bin_dir() / "jobctl").string();
  const auto v1 = run_cmd({jobctl, "--server", server.url(), "validate", (root_ / "good.yaml").string()});
  EXPECT_EQ(v1.rc, 0) << v1.err;
  EXPECT_NE(v1.out.find("valid: RTN"), std::string::npos) << v1.out;
  EXPECT_NE(v1.out.find("estimate: "), std::string::npos) << v1.out;
  EXPECT_NE(v1.out.find("output 291 KiB, original 1.5 MiB"), std::string::npos) << v1.out;
  EXPECT_NE(v1.err.find("warning: model.layers.*.mlp.down_proj"), std::string::npos) << v1.err;
  const auto v2 = run_cmd({jobctl, "--server", server.url(), "validate", (root_ / "bad.yaml").string()});
  EXPECT_EQ(v2.rc, 5) << v2.err;
  EXPECT_NE(v2.err.find("llm.RTN.Q_GROUP_SIZE:6:"), std::string::npos) << v2.err;
  // Nothing was stored: no job, no folder.
  EXPECT_TRUE(json::parse(client.request("GET", "/jobs").body)["jobs"].empty());
  EXPECT_TRUE(!fs::exists(ud / "jobs") || fs::is_empty(ud / "jobs"));
  server.terminate();

  // The next server on this machine takes the kept rates; rates another
  // machine measured are measured again.
  auto rates = json::parse(read_file(ud / "device_rates.json"));
  const std::string here = rates["cpu"]["host"];
  EXPECT_FALSE(here.empty());
  rates["cpu"]["gemm_gflops"] = 12345.0;
  std::ofstream(ud / "device_rates.json") << rates.dump();
  {
    ServerProcess again(ud, {"--slots", "1"});
    const auto r = json::parse(again.client().request("POST", "/jobs?dry_run=1", good).body);
    EXPECT_EQ(r["estimate"]["rates"]["gemm_gflops"], 12345.0) << r.dump();
    again.terminate();
  }
  rates["cpu"]["host"] = "another-machine";
  std::ofstream(ud / "device_rates.json") << rates.dump();
  {
    ServerProcess third(ud, {"--slots", "1"});
    const auto r = json::parse(third.client().request("POST", "/jobs?dry_run=1", good).body);
    EXPECT_NE(r["estimate"]["rates"]["gemm_gflops"], 12345.0) << r.dump();
    EXPECT_EQ(json::parse(read_file(ud / "device_rates.json"))["cpu"]["host"], here);
    third.terminate();
  }
}

TEST_F(ServerTest, BadInputNeverCrashesOrChangesStoredJobs) {
  const fs::path ud = root_ / "ud";
  ServerProcess server(ud, {"--slots", "1", "--body-limit", "65536"}, {{"QJOBS_TEST_STEP_DELAY_MS", "200"}});
  auto client = server.client();
  // One finished job to aim at, with escape hatches planted in its folder.
  const std::string done = submit(server, rtn_spec());
  wait_terminal(server, done);
  std::ofstream(root_ / "secret.txt") << "TOP-SECRET";
  fs::create_symlink(root_ / "secret.txt", ud / "jobs" / done / "escape.txt");
  fs::create_directory_symlink(root_, ud / "jobs" / done / "escape-dir");
  // And one running job.
  const std::string running = submit(server, rtn_spec());
  ASSERT_TRUE(wait_until([&] { return server.job(running)["state"] == "RUNNING"; }, 30s));

  const auto before = json::parse(client.request("GET", "/jobs?limit=100").body)["jobs"];

  const auto cases = json::parse(read_file(fs::path(QJOBS_SOURCE_DIR) / "tests/data/api_cases.json"))["cases"];
  for (const auto& c : cases) {
    std::string target = c["target"];
    if (const auto pos = target.find("{id}"); pos != std::string::npos) target.replace(pos, 4, done);
    const auto r = client.request(c["method"], target, c.value("body", ""));
    EXPECT_EQ(r.status, c["status"].get<int>()) << c["name"] << ": " << r.body;
    EXPECT_EQ(r.body.find("TOP-SECRET"), std::string::npos) << c["name"];
    if (r.status >= 400) {
      const auto body = json::parse(r.body, nullptr, false);
      ASSERT_FALSE(body.is_discarded()) << c["name"] << ": errors are JSON";
      EXPECT_TRUE(body.contains("error")) << c["name"];
    }
    for (const auto& s : c.value("contains", json::array()))
      EXPECT_NE(r.body.find(s.get<std::string>()), std::string::npos) << c["name"] << ": " << r.body;
  }

  // Delete of a running job: 409, and it keeps running.
  EXPECT_EQ(client.request("DELETE", "/jobs/" + running).status, 409);
  // A body over the limit: 413.
  const auto big = client.request("POST", "/jobs", std::string(200000, '#'));
  EXPECT_EQ(big.status, 413) << big.body;
  // Garbage instead of HTTP.
  const auto raw = run_cmd({"/bin/sh", "-c",
                            "printf 'NOT HTTP\\r\\n\\r\\n' | timeout 5 bash -c 'cat > /dev/tcp/127.0.0.1/" +
                                server.url().substr(server.url().rfind(':') + 1) + "'"});
  (void)raw;

  EXPECT_EQ(client.request("GET", "/healthz").status, 200);
  const auto after = json::parse(client.request("GET", "/jobs?limit=100").body)["jobs"];
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i]["id"], before[i]["id"]);
  EXPECT_EQ(wait_terminal(server, running)["state"], "SUCCEEDED");
  EXPECT_EQ(server.job(done)["state"], "SUCCEEDED");
  EXPECT_TRUE(fs::exists(ud / "jobs" / done / "model" / "config.json"));

  // Delete of a finished job removes it and its folder.
  EXPECT_EQ(client.request("DELETE", "/jobs/" + done).status, 200);
  EXPECT_EQ(client.request("GET", "/jobs/" + done).status, 404);
  EXPECT_FALSE(fs::exists(ud / "jobs" / done));
}

TEST_F(ServerTest, TokensAreRequiredWhenConfigured) {
  std::ofstream(root_ / "tokens") << "# comment\nsecret-token-1\n";
  ServerProcess server(root_ / "ud", {"--tokens-file", (root_ / "tokens").string()});
  for (const auto& target : {"/jobs", "/jobs/x", "/metrics", "/jobs/x/artifacts"})
    EXPECT_EQ(server.client().request("GET", target).status, 401) << target;
  EXPECT_EQ(server.client("wrong").request("GET", "/jobs").status, 401);
  EXPECT_EQ(server.client().request("POST", "/jobs", rtn_spec()).status, 401);
  EXPECT_EQ(server.client().request("GET", "/healthz").status, 200);
  EXPECT_EQ(server.client("secret-token-1").request("GET", "/jobs").status, 200);
  const auto spec = write_spec("job.yaml", rtn_spec());
  const auto r = run_cmd({jobctl(), "--server", server.url(), "submit", spec.string(), "--wait"},
                         {{"QJOBS_TOKEN", "secret-token-1"}});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(run_cmd({jobctl(), "--server", server.url(), "list"}).rc, 1);
}

TEST_F(ServerTest, IdempotencyKeyReturnsTheFirstJob) {
  ServerProcess server(root_ / "ud");
  auto c = server.client();
  const auto a = c.request("POST", "/jobs", rtn_spec(), {{"Idempotency-Key", "abc"}});
  const auto b = c.request("POST", "/jobs", rtn_spec(8, -1, false), {{"Idempotency-Key", "abc"}});
  EXPECT_EQ(a.status, 201);
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(json::parse(a.body)["id"], json::parse(b.body)["id"]);
  EXPECT_EQ(a.headers.at("location"), b.headers.at("location"));
  EXPECT_EQ(json::parse(c.request("GET", "/jobs").body)["jobs"].size(), 1u);
}

TEST_F(ServerTest, TwoHundredSubmissionsFromEightClients) {
  model::RandomModelOptions tiny;
  tiny.hidden = 32;
  tiny.intermediate = 64;
  tiny.layers = 1;
  tiny.vocab = 64;
  model::write_random_llama(root_ / "tiny", tiny);
  // The server under load is what is measured: the verify stage's reference
  // read (a Python process per job, tested on its own) is off.
  const std::string spec = "MODEL: \"" + (root_ / "tiny").string() + "\"\nALGORITHM: RTN\nVERIFY: false\n";
  ServerProcess server(root_ / "ud", {"--slots", "4"});
  std::mutex mu;
  std::vector<std::string> ids;
  std::atomic<int> failures{0};
  std::vector<std::string> failed;  // status and body of each refused submission, to say why
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&] {
      auto c = server.client();
      for (int i = 0; i < 25; ++i) {
        const auto r = c.request("POST", "/jobs", spec);
        if (r.status != 201) {
          ++failures;
          std::lock_guard lock(mu);
          failed.push_back(std::to_string(r.status) + " " + r.body.substr(0, 300));
          continue;
        }
        std::lock_guard lock(mu);
        ids.push_back(json::parse(r.body)["id"]);
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0) << (failed.empty() ? std::string() : failed.front());
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 200u);
  std::set<std::string> listed;
  std::string cursor;
  do {
    const auto page = json::parse(
        server.client().request("GET", "/jobs?limit=64" + (cursor.empty() ? "" : "&cursor=" + cursor)).body);
    for (const auto& j : page["jobs"]) listed.insert(j["id"]);
    cursor = page["next_cursor"].is_string() ? page["next_cursor"].get<std::string>() : "";
  } while (!cursor.empty());
  EXPECT_EQ(listed.size(), 200u);
  ASSERT_TRUE(wait_until(
      [&] {
        const auto page = json::parse(server.client().request("GET", "/jobs?limit=1000").body)["jobs"];
        return std::all_of(page.begin(), page.end(), [](const json& j) { return terminal_state(j["state"]); });
      },
      240s));
  const auto metrics = server.client().request("GET", "/metrics").body;
  EXPECT_NE(metrics.find("qjobs_jobs{state=\"SUCCEEDED\"} 200"), std::string::npos) << metrics;
}

// Issue 16, jobctl as a user meets it: a Nyuntam JOB_ID is the job's name
// and works wherever an id does (the newest of the name; the same config
// twice is two jobs); list has a header and columns; --set and --name;
// folders download; documented exit codes; errors in --json.
TEST_F(ServerTest, JobctlNamesColumnsSetDownloadAndExitCodes) {
  const fs::path ud = root_ / "ud";
  ServerProcess server(ud, {"--slots", "1"}, {{"QJOBS_TEST_STEP_DELAY_MS", "40"}});
  const std::string jobctl = (bin_dir() / "jobctl").string();
  const auto jc = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {jobctl, "--server", server.url()});
    return run_cmd(args);
  };
  // No arguments: usage, exit 2. No server: exit 3.
  const auto none = run_cmd({jobctl});
  EXPECT_EQ(none.rc, 2);
  EXPECT_NE((none.out + none.err).find("submit"), std::string::npos) << none.err;
  EXPECT_EQ(run_cmd({jobctl, "--server", "http://127.0.0.1:1", "list"}).rc, 3);
  EXPECT_EQ(jc({"frobnicate"}).rc, 2);
  // A near miss names the command meant (issue 31).
  const auto stat = jc({"stat", "x"});
  EXPECT_EQ(stat.rc, 2);
  EXPECT_NE(stat.err.find("unknown command 'stat'; did you mean 'status'?"), std::string::npos) << stat.err;

  // Nyuntam's config twice: two jobs of one name.
  std::string spec = rtn_spec();
  spec.replace(spec.find("JOB_ID: t"), 9, "JOB_ID: \"awq_quantization\"");
  const fs::path file = write_spec("nyuntam.yaml", spec);
  const auto s1 = jc({"submit", file.string(), "--wait"});
  ASSERT_EQ(s1.rc, 0) << s1.err;
  const auto s2 = jc({"submit", file.string(), "--wait"});
  ASSERT_EQ(s2.rc, 0) << s2.err;
  const std::string id1 = s1.out.substr(0, s1.out.find('\n')), id2 = s2.out.substr(0, s2.out.find('\n'));
  EXPECT_NE(id1, id2);
  const auto st = jc({"--json", "status", "awq_quantization"});
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_EQ(json::parse(st.out)["id"], id2) << "the newest job of the name";
  EXPECT_EQ(json::parse(st.out)["name"], "awq_quantization");
  EXPECT_EQ(jc({"wait", "awq_quantization"}).rc, 0);
  const auto logs = jc({"logs", "awq_quantization"});
  EXPECT_EQ(logs.rc, 0);
  EXPECT_NE(logs.out.find("progress quantize "), std::string::npos) << "progress lines at info level: " << logs.out;
  EXPECT_NE(logs.out.find("(100%) in "), std::string::npos) << logs.out;
  const auto named = jc({"list", "--name", "awq_quantization"});
  ASSERT_EQ(named.rc, 0) << named.err;
  const auto header = named.out.substr(0, named.out.find('\n'));
  std::size_t at = 0;
  for (const char* col : {"ID", "NAME", "STATE", "ALGORITHM", "MODEL", "STAGE", "PROGRESS", "AGE"}) {
    const auto p = header.find(col, at);
    ASSERT_NE(p, std::string::npos) << col << " in " << header;
    at = p;
  }
  EXPECT_NE(named.out.find(id1), std::string::npos);
  EXPECT_NE(named.out.find(id2), std::string::npos);
  EXPECT_NE(named.out.find("SUCCEEDED"), std::string::npos);
  EXPECT_NE(named.out.find("100%"), std::string::npos) << named.out;

  // Not found: 4, and in --json the error is JSON on stdout.
  EXPECT_EQ(jc({"status", "no-such-job"}).rc, 4);
  const auto nf = jc({"--json", "status", "no-such-job"});
  EXPECT_EQ(nf.rc, 4);
  const auto nfj = json::parse(nf.out, nullptr, false);
  ASSERT_FALSE(nfj.is_discarded()) << nf.out;
  EXPECT_EQ(nfj["status"], 404);
  EXPECT_EQ(nfj["kind"], "not_found");
  // An invalid spec: 5 at submission too, with the key and line.
  const auto bad = jc({"submit", write_spec("bad.yaml", rtn_spec(99)).string()});
  EXPECT_EQ(bad.rc, 5);
  EXPECT_NE(bad.err.find("llm.RTN.W_BIT:"), std::string::npos) << bad.err;
  // A spec file that is not there is "no such file": 4, as the README says.
  const auto missing = jc({"submit", (root_ / "missing.yaml").string()});
  EXPECT_EQ(missing.rc, 4);
  EXPECT_NE(missing.err.find("no such spec file"), std::string::npos) << missing.err;
  EXPECT_EQ(jc({"validate", (root_ / "missing.yaml").string()}).rc, 4);

  // --set by dotted path and --name; the stored spec says so.
  const auto set = jc({"submit", file.string(), "--set", "llm.RTN.W_BIT=8", "--set", "llm.RTN.Q_GROUP_SIZE=-1",
                       "--name", "renamed", "--wait"});
  ASSERT_EQ(set.rc, 0) << set.err;
  const json renamed = server.job("renamed");
  EXPECT_EQ(renamed["name"], "renamed");
  EXPECT_EQ(renamed["spec"]["params"]["W_BIT"], 8);
  EXPECT_EQ(renamed["spec"]["params"]["Q_GROUP_SIZE"], -1);
  EXPECT_NE(renamed["spec_yaml"].get<std::string>().find("W_BIT: 8"), std::string::npos);
  check_rtn_output(ud / "jobs" / renamed["id"].get<std::string>() / "model", 8, -1, true);
  // A list is indexed by number; an index past its end is a usage error.
  // (An eval task reads text: the model folder needs a tokenizer.json.)
  fs::copy_file(fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama/tokenizer.json", model_ / "tokenizer.json");
  const fs::path with_eval =
      write_spec("eval.yaml", rtn_spec() + "eval:\n  tasks:\n    - type: demo\n      prompts: [\"a\"]\n");
  const auto idx = jc({"--json", "validate", with_eval.string(), "--set", "eval.tasks.0.max_new_tokens=3"});
  ASSERT_EQ(idx.rc, 0) << idx.err;
  EXPECT_EQ(json::parse(idx.out)["spec"]["eval"]["tasks"][0]["max_new_tokens"], 3);
  EXPECT_EQ(jc({"validate", with_eval.string(), "--set", "eval.tasks.5.max_new_tokens=3"}).rc, 2);

  // A folder downloads alone.
  const fs::path out = root_ / "dl";
  const auto dl = jc({"download", "renamed", "model/", "-o", out.string()});
  ASSERT_EQ(dl.rc, 0) << dl.err;
  EXPECT_TRUE(fs::exists(out / "model" / "config.json"));
  EXPECT_FALSE(fs::exists(out / "report.md")) << "only the folder asked for";
  EXPECT_EQ(load_dir(out / "model").size(), load_dir(ud / "jobs" / renamed["id"].get<std::string>() / "model").size());
  EXPECT_EQ(jc({"download", "renamed", "nothing-here/", "-o", out.string()}).rc, 4);

  // --state takes several states, repeated or comma-separated; an unknown one is refused by name.
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--json", "list", "--state", "SUCCEEDED", "--state", "failed"},
                                             {"--json", "list", "--state", "FAILED,succeeded"}}) {
    const auto both = jc(args);
    ASSERT_EQ(both.rc, 0) << both.err;
    EXPECT_EQ(json::parse(both.out)["jobs"].size(), 3u) << both.out;
  }
  EXPECT_EQ(json::parse(jc({"--json", "list", "--state", "FAILED"}).out)["jobs"].size(), 0u);
  const auto unknown_state = jc({"list", "--state", "SUCCEEDED,DONE"});
  EXPECT_EQ(unknown_state.rc, 1);
  EXPECT_NE(unknown_state.err.find("unknown state 'DONE'"), std::string::npos) << unknown_state.err;

  // list --watch redraws until nothing listed is queued or running.
  const std::string slow = submit(server, rtn_spec());
  ASSERT_TRUE(wait_until([&] { return server.job(slow)["state"] == "RUNNING"; }, 30s));
  // Its name names only a running job: nothing to compare, exit 1 (issue 31: an all-dash table and 0).
  const std::string slow_name = server.job(slow)["name"].get<std::string>();
  const auto early = jc({"compare", slow_name});
  EXPECT_EQ(early.rc, 1) << early.out;
  EXPECT_NE(early.err.find("none of the jobs has a report"), std::string::npos) << early.err;
  const auto watch = jc({"list", "--watch", "--limit", "3"});
  EXPECT_EQ(watch.rc, 0) << watch.err;
  EXPECT_NE(watch.out.find("RUNNING"), std::string::npos) << watch.out;
  EXPECT_EQ(server.job(slow)["state"], "SUCCEEDED") << "--watch returned before the job ended";
  // A newer job of that name running: the name compares the newest that succeeded.
  const std::string newer = submit(server, rtn_spec());
  ASSERT_TRUE(wait_until([&] { return server.job(newer)["state"] == "RUNNING"; }, 30s));
  const auto by_name = jc({"--json", "compare", slow_name});
  ASSERT_EQ(by_name.rc, 0) << by_name.err;
  EXPECT_EQ(json::parse(by_name.out)["columns"][0]["id"], slow) << by_name.out;
  server.terminate();
}

// Issue 16: `jobctl algorithms` and `init` come from the catalog; every
// template validates against a real server as it is printed.
TEST_F(ServerTest, JobctlAlgorithmsAndInitTemplatesThatValidate) {
  const std::string jobctl = (bin_dir() / "jobctl").string();
  const auto all = run_cmd({jobctl, "algorithms"});
  ASSERT_EQ(all.rc, 0);
  const auto hqq = run_cmd({jobctl, "algorithms", "HQQ"});
  ASSERT_EQ(hqq.rc, 0);
  EXPECT_NE(hqq.out.find("| `Q_GROUP_SIZE` | integer | `64` |"), std::string::npos) << hqq.out;
  EXPECT_EQ(hqq.out.find("### `RTN`"), std::string::npos) << "one algorithm only";
  EXPECT_EQ(run_cmd({jobctl, "algorithms", "--markdown"}).out, catalog_markdown());
  const auto js = json::parse(run_cmd({jobctl, "--json", "algorithms", "GPTQ"}).out);
  EXPECT_EQ(js["name"], "GPTQ");
  EXPECT_EQ(run_cmd({jobctl, "algorithms", "NoSuch"}).rc, 4);
  // `jobctl tasks`: the eval tasks' rows, the README's copy, one task, JSON.
  EXPECT_EQ(run_cmd({jobctl, "tasks", "--markdown"}).out, eval_tasks_markdown());
  const auto mc = run_cmd({jobctl, "tasks", "mc"});
  ASSERT_EQ(mc.rc, 0);
  EXPECT_NE(mc.out.find("| `num_fewshot` | integer |"), std::string::npos) << mc.out;
  EXPECT_EQ(mc.out.find("### `type: ppl`"), std::string::npos) << "one task only";
  const auto tasks = json::parse(run_cmd({jobctl, "--json", "tasks"}).out);
  ASSERT_EQ(tasks["eval_tasks"].size(), eval_task_catalog().size());
  EXPECT_EQ(tasks["eval_tasks"][0]["type"], eval_task_catalog()[0].type);
  EXPECT_EQ(run_cmd({jobctl, "tasks", "hellaswag"}).rc, 4);

  // The templates name repository-relative data: the server runs from the
  // repository root, as scripts/demo.sh starts it.
  const fs::path here = fs::current_path();
  fs::current_path(QJOBS_SOURCE_DIR);
  ServerProcess server(root_ / "ud", {"--slots", "1"});
  fs::current_path(here);
  int checked = 0;
  for (const auto& algo : algorithm_catalog()) {
    if (!algo.available) continue;
    const auto t = run_cmd({jobctl, "init", algo.name, "--model", "examples/kjv-llama"});
    ASSERT_EQ(t.rc, 0) << algo.name;
    EXPECT_NE(t.out.find("ALGORITHM: " + algo.name), std::string::npos);
    const fs::path f = write_spec("init-" + algo.name + ".yaml", t.out);
    const auto v = run_cmd({jobctl, "--server", server.url(), "validate", f.string()});
    EXPECT_EQ(v.rc, 0) << algo.name << ":\n" << t.out << "\n" << v.err;
    ++checked;
  }
  EXPECT_GE(checked, 9);
  server.terminate();
}

// Issue 16: the dashboard is served at / without a token (the page holds no
// data), every API call still needs one, and the page is locked down (CSP).
TEST_F(ServerTest, DashboardFilesAreServedAndTheApiStillNeedsTheToken) {
  std::ofstream(root_ / "tokens") << "dash-token\n";
  ServerProcess server(root_ / "ud", {"--slots", "1", "--tokens-file", (root_ / "tokens").string()});
  auto anon = server.client();
  const auto page = anon.request("GET", "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers.at("content-type").rfind("text/html", 0), 0u);
  EXPECT_NE(page.body.find("/ui/app.js"), std::string::npos);
  EXPECT_NE(page.headers.at("content-security-policy").find("default-src 'self'"), std::string::npos);
  const auto js = anon.request("GET", "/ui/app.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.headers.at("content-type").rfind("text/javascript", 0), 0u);
  EXPECT_GT(js.body.size(), 1000u);
  EXPECT_EQ(anon.request("GET", "/ui/style.css").status, 200);
  EXPECT_NE(anon.request("GET", "/ui/../qjobs.db").status, 200);
  EXPECT_NE(anon.request("GET", "/ui/nothing.js").status, 200);
  EXPECT_EQ(anon.request("GET", "/jobs").status, 401);
  EXPECT_EQ(anon.request("GET", "/algorithms").status, 401);
  auto authed = server.client("dash-token");
  const auto algos = authed.request("GET", "/algorithms");
  ASSERT_EQ(algos.status, 200);
  bool rtn = false;
  const json listed = json::parse(algos.body);
  for (const auto& a : listed["algorithms"]) rtn = rtn || a.value("name", std::string()) == "RTN";
  EXPECT_TRUE(rtn) << algos.body.substr(0, 300);
  // The submit page's templates are jobctl init's.
  const auto tpl = authed.request("GET", "/algorithms/GPTQ/template?model=examples/kjv-llama");
  ASSERT_EQ(tpl.status, 200);
  EXPECT_EQ(tpl.body, spec_template(*find_algorithm("GPTQ"), "examples/kjv-llama"));
  EXPECT_EQ(authed.request("GET", "/algorithms/NoSuch/template").status, 404);
  // ... and the shipped recipes, every file of configs/recipes as it is.
  const auto recipes = authed.request("GET", "/recipes");
  ASSERT_EQ(recipes.status, 200) << recipes.body;
  std::set<std::string> listed_recipes;
  const json recipe_list = json::parse(recipes.body);  // named: a range-for would outlive a temporary
  for (const auto& r : recipe_list["recipes"]) {
    const std::string name = r.value("name", "");
    listed_recipes.insert(name);
    const std::string title = r.value("title", "");
    EXPECT_TRUE(title.size() > 10 && title.ends_with(".")) << name << ": a sentence, not a cut line: " << title;
    EXPECT_NE(find_algorithm(r.value("algorithm", "")), nullptr) << name << ": " << r.dump();
    const auto one = authed.request("GET", "/recipes/" + name);
    ASSERT_EQ(one.status, 200) << name;
    EXPECT_EQ(one.body, read_file(fs::path(QJOBS_SOURCE_DIR) / r.value("path", ""))) << name;
  }
  std::set<std::string> shipped;
  for (const auto& e : fs::directory_iterator(fs::path(QJOBS_SOURCE_DIR) / "configs/recipes"))
    if (e.path().extension() == ".yaml") shipped.insert(e.path().stem().string());
  EXPECT_EQ(listed_recipes, shipped);
  EXPECT_EQ(authed.request("GET", "/recipes/no-such-recipe").status, 404);
  EXPECT_EQ(anon.request("GET", "/recipes").status, 401);
  const auto cmp = authed.request("GET", "/compare?ids=nope");
  EXPECT_EQ(cmp.status, 404) << cmp.body;
  EXPECT_EQ(authed.request("GET", "/compare").status, 400);
  server.terminate();
}

// Issue 16: a job that fails has a report too: the error, the stage it
// failed in, its attempts and the end of its log; `jobctl wait` exits 1.
TEST_F(ServerTest, FailedJobsHaveAReportWithTheErrorAndTheStage) {
  ServerProcess server(root_ / "ud", {"--slots", "1"});
  const fs::path broken = root_ / "broken";
  fs::create_directories(broken);
  fs::copy_file(model_ / "config.json", broken / "config.json");
  std::ofstream(broken / "model.safetensors") << "this is not a safetensors file";
  std::string spec = rtn_spec();
  spec.replace(spec.find(model_.string()), model_.string().size(), broken.string());
  spec += "MAX_ATTEMPTS: 1\n";
  const std::string id = submit(server, spec);
  const std::string jobctl = (bin_dir() / "jobctl").string();
  const auto w = run_cmd({jobctl, "--server", server.url(), "wait", id});
  EXPECT_EQ(w.rc, 1) << w.out;
  // Following the log of a job that failed ends as `wait` does: exit 1 (issue 31).
  const auto followed = run_cmd({jobctl, "--server", server.url(), "logs", "-f", id});
  EXPECT_EQ(followed.rc, 1) << followed.err;
  EXPECT_NE(followed.out.find("error [worker] load:"), std::string::npos) << followed.out;
  EXPECT_NE(followed.err.find(id + " FAILED: MODEL_LOAD: "), std::string::npos) << followed.err;
  const json job = server.job(id);
  ASSERT_EQ(job["state"], "FAILED");
  EXPECT_EQ(job["error_type"], "MODEL_LOAD");
  const auto rep = run_cmd({jobctl, "--server", server.url(), "report", id});
  ASSERT_EQ(rep.rc, 0) << rep.err;
  EXPECT_NE(rep.out.find("FAILED"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("| error type | " + job["error_type"].get<std::string>() + " |"), std::string::npos)
      << rep.out;
  EXPECT_NE(rep.out.find("| stage | load |"), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find(job["error"].get<std::string>().substr(0, 40)), std::string::npos) << rep.out;
  EXPECT_NE(rep.out.find("End of logs/worker.log"), std::string::npos) << rep.out;
  const auto rj = json::parse(run_cmd({jobctl, "--server", server.url(), "--json", "report", id}).out);
  EXPECT_EQ(rj["state"], "FAILED");
  EXPECT_EQ(rj["stage"], "load");
  server.terminate();
}

}  // namespace
}  // namespace qjobs::testing
