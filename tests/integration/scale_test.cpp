// Real-scale behaviour of the worker on this CPU machine: a bf16 checkpoint
// calibrated, packed and evaluated in float32 never holds a float32 copy of
// the model (nor its output): the worker's peak RSS, read by the kernel
// (ru_maxrss through GNU time, the VmHWM of the worker), does not grow with the depth
// of the model beyond a bound set by one block.
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "jobs/model/random_model.hpp"
#include "integration/harness.hpp"

extern char** environ;

namespace qjobs::testing {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kExample = fs::path(QJOBS_SOURCE_DIR) / "examples/kjv-llama";
const fs::path kData = fs::path(QJOBS_SOURCE_DIR) / "examples/data/kjv";

struct Run {
  int status = -1;
  int64_t max_rss_bytes = 0;
};

// Runs argv as a grandchild under GNU time and returns its exit status and
// peak RSS (time's %M: the ru_maxrss of a process time forked). Not this
// process's own child: a child spawned from here (vfork, or fork) inherits
// this test's peak RSS as its ru_maxrss floor when it execs, which is larger
// than the worker's own peak now that the test links a CUDA libtorch.
Run run_measured(const std::vector<std::string>& argv_in) {
  const fs::path rss_file = fs::temp_directory_path() / ("qjobs_rss_" + std::to_string(::getpid()));
  std::vector<std::string> argv = {"/usr/bin/time", "-f", "%M", "-o", rss_file.string()};
  argv.insert(argv.end(), argv_in.begin(), argv_in.end());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  Run r;
  if (::posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return r;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return r;
  r.status = status;
  std::ifstream in(rss_file);
  int64_t kib = 0;
  in >> kib;
  r.max_rss_bytes = kib * 1024;
  fs::remove(rss_file);
  return r;
}

json read_json(const fs::path& p) { return json::parse(std::ifstream(p)); }

struct DepthRun {
  Run run;
  int64_t checkpoint_bytes = 0;
  json report;
};

// `algo` with `format`, GPTQ with gptq by default (with a perplexity
// evaluation); others without one.
DepthRun quantize_at_depth(const fs::path& root, int64_t layers, const std::string& algo = "GPTQ",
                           const std::string& format = "gptq") {
  const fs::path model = root / ("m" + std::to_string(layers));
  model::RandomModelOptions o;
  o.hidden = 512;
  o.intermediate = 1408;
  o.heads = 8;
  o.kv_heads = 2;
  o.vocab = 1024;
  o.layers = layers;
  o.dtype = "bfloat16";
  o.seed = 7;
  model::write_random_llama(model, o);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(kExample / f, model / f);
  const std::string tag = std::to_string(layers) + (algo == "GPTQ" && format == "gptq" ? "" : algo + format);
  const fs::path spec = root / ("s" + tag + ".yaml");
  std::ofstream out(spec);
  out << "MODEL: \"" << model.string() << "\"\nALGORITHM: " << algo << "\nEXPORT_FORMAT: " << format << "\n"
      << "llm:\n  " << algo << ":\n    W_BIT: 4\n    Q_GROUP_SIZE: 128\n";
  if (algo != "RTN")
    out << "calibration:\n  data_path: \"" << (kData / "calib.jsonl").string() << "\"\n  n_samples: 8\n  seqlen: 128\n";
  if (algo == "GPTQ" && format == "gptq")
    out << "eval:\n  tasks:\n    - type: ppl\n      name: kjv\n      data_path: \"" << (kData / "test.jsonl").string()
        << "\"\n      seqlen: 128\n      num_samples: 8\n";
  out.close();
  const fs::path job = root / ("j" + tag);
  DepthRun d;
  d.run = run_measured({(bin_dir() / "qjobs-worker").string(), "run", spec.string(), "--job-dir", job.string()});
  d.checkpoint_bytes = static_cast<int64_t>(fs::file_size(model / "model.safetensors"));
  if (fs::exists(job / "report.json")) d.report = read_json(job / "report.json");
  return d;
}

TEST(Scale, Bf16GptqPeakMemoryDoesNotGrowWithDepthBeyondOneBlock) {
  const auto root = make_temp_dir("scale");
  const auto shallow = quantize_at_depth(root, 4);
  const auto deep = quantize_at_depth(root, 20);
  ASSERT_TRUE(WIFEXITED(shallow.run.status) && WEXITSTATUS(shallow.run.status) == 0);
  ASSERT_TRUE(WIFEXITED(deep.run.status) && WEXITSTATUS(deep.run.status) == 0);
  // One decoder block in float32 (what the worker computes in on the CPU).
  const int64_t block_f32 = (2 * 512 + 512 * (512 + 2 * 128) + 512 * 512 + 3 * 512 * 1408) * 4;
  const int64_t growth = deep.run.max_rss_bytes - shallow.run.max_rss_bytes;
  const int64_t ckpt_growth = deep.checkpoint_bytes - shallow.checkpoint_bytes;  // 16 bf16 blocks
  ASSERT_GT(ckpt_growth, 10 * block_f32 / 2);
  // A float32 copy of the model would add 2x ckpt_growth, holding the output
  // or the whole mapping in memory about 1x; streaming adds about nothing.
  EXPECT_LT(growth, 3 * block_f32) << "peak RSS " << shallow.run.max_rss_bytes << " -> " << deep.run.max_rss_bytes
                                   << " bytes for a checkpoint " << shallow.checkpoint_bytes << " -> "
                                   << deep.checkpoint_bytes;
  EXPECT_LT(deep.run.max_rss_bytes, shallow.run.max_rss_bytes + deep.checkpoint_bytes);
  // The report states the same peak the kernel saw (VmHWM is ru_maxrss) and where it ran.
  const auto& mem = deep.report["memory"];
  ASSERT_TRUE(mem.is_object()) << deep.report.dump();
  EXPECT_NEAR(mem["host_peak_mib"].get<double>() * 1024 * 1024, static_cast<double>(deep.run.max_rss_bytes),
              0.05 * static_cast<double>(deep.run.max_rss_bytes));
  EXPECT_NEAR(mem["checkpoint_mib"].get<double>() * 1024 * 1024, static_cast<double>(deep.checkpoint_bytes), 1.0);
  EXPECT_EQ(mem["placement"], "cpu, Float");
  EXPECT_TRUE(mem["device_peak_mib"].is_null());  // no device on this machine: not made up
  // Packed, smaller, and evaluated (streamed: bf16 in float32 on the CPU).
  EXPECT_LT(deep.report["size_mib"]["after"].get<double>(), 0.45 * deep.report["size_mib"]["before"].get<double>());
  EXPECT_GT(deep.report["eval"]["quantized"]["kjv"]["ppl"].get<double>(), 1.0);
  bool streamed_event = false, placement_event = false;
  std::ifstream ev(root / "j20" / "events.jsonl");
  for (std::string line; std::getline(ev, line);) {
    const auto e = json::parse(line);
    streamed_event = streamed_event || e.value("type", "") == "streamed";
    placement_event = placement_event || (e.value("type", "") == "placement" && e.value("device", "") == "cpu");
  }
  EXPECT_TRUE(streamed_event);
  EXPECT_TRUE(placement_event);
  // Disk: the job folder held the calibration state or the output, not both
  // whole: for 16 blocks more, the peak grew by the state's growth (a byte
  // per 4-bit code, float32 scales and int32 zero points per 128 weights,
  // an int32 g_idx per input column), not by that and the output's too.
  const auto mib = [](const json& j) { return j.get<double>() * 1048576; };
  const double weights = 512.0 * (512 + 2 * 128) + 512 * 512 + 3 * 512 * 1408;
  const double state_block = weights + weights / 128 * 8 + 4.0 * (6 * 512 + 1408);
  const double peak_growth =
      mib(deep.report["memory"]["disk_peak_mib"]) - mib(shallow.report["memory"]["disk_peak_mib"]);
  const double out_growth = mib(deep.report["size_mib"]["after"]) - mib(shallow.report["size_mib"]["after"]);
  EXPECT_GT(peak_growth, 0.9 * 16 * state_block);
  EXPECT_LT(peak_growth, 16 * state_block + 2 * block_f32 / 2.0)
      << "disk peak " << shallow.report["memory"]["disk_peak_mib"] << " -> " << deep.report["memory"]["disk_peak_mib"]
      << " MiB for an output of " << shallow.report["size_mib"]["after"] << " -> " << deep.report["size_mib"]["after"]
      << " MiB (output growth " << out_growth << " bytes)";
  fs::remove_all(root);
}

// fake_quant keeps a stored-dtype copy of every finished Linear as its
// calibration state: the job folder's peak disk still grows with depth by
// the output only.
TEST(Scale, FakeQuantDiskPeakDoesNotGrowWithDepthBeyondTheOutput) {
  const auto root = make_temp_dir("scale-disk");
  const auto shallow = quantize_at_depth(root, 4, "RTN", "fake_quant");
  const auto deep = quantize_at_depth(root, 20, "RTN", "fake_quant");
  ASSERT_TRUE(WIFEXITED(shallow.run.status) && WEXITSTATUS(shallow.run.status) == 0);
  ASSERT_TRUE(WIFEXITED(deep.run.status) && WEXITSTATUS(deep.run.status) == 0);
  const double block_bf16 = (2 * 512 + 512 * (512 + 2 * 128) + 512 * 512 + 3 * 512 * 1408) * 2.0;
  const auto mib = [](const json& j) { return j.get<double>() * 1048576; };
  const double out_growth = mib(deep.report["size_mib"]["after"]) - mib(shallow.report["size_mib"]["after"]);
  const double peak_growth =
      mib(deep.report["memory"]["disk_peak_mib"]) - mib(shallow.report["memory"]["disk_peak_mib"]);
  ASSERT_GT(out_growth, 15 * block_bf16);  // 16 blocks more, bf16 as stored
  // Before: the state and the output whole at once, 2x the output's growth.
  EXPECT_LT(peak_growth - out_growth, 2 * block_bf16)
      << "disk peak " << shallow.report["memory"]["disk_peak_mib"] << " -> " << deep.report["memory"]["disk_peak_mib"]
      << " MiB for an output of " << shallow.report["size_mib"]["after"] << " -> " << deep.report["size_mib"]["after"]
      << " MiB";
  fs::remove_all(root);
}

// bench/gpu_check.sh is for a GPU machine; --cpu runs the same steps here at
// small shapes, so that the script keeps working between GPU runs.
TEST(GpuCheckScript, RunsEndToEndOnTheCpuBuild) {
  const auto out = make_temp_dir("gpu-check");
  const auto r = run_cmd({"/bin/bash", (fs::path(QJOBS_SOURCE_DIR) / "bench/gpu_check.sh").string(), "--cpu",
                          "--worker", (bin_dir() / "qjobs-worker").string(), "--out", out.string()});
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const auto summary = read_json(out / "summary.json");
  EXPECT_TRUE(summary["pass"].get<bool>());
  ASSERT_EQ(summary["jobs"].size(), 3u);
  for (const auto& j : summary["jobs"]) {
    EXPECT_TRUE(j["pass"].get<bool>()) << j.dump();
    EXPECT_GT(j["s_per_block"].get<double>(), 0) << j.dump();
    EXPECT_LT(j["size_mib_after"].get<double>(), j["size_mib_before"].get<double>()) << j.dump();
    EXPECT_EQ(j["placement"], "cpu, Float");
  }
  EXPECT_GT(summary["gemm_gflops"].get<double>(), 0);
  // With the reference models present (CI), every one matches to 1e-4.
  for (const auto& ref : summary["reference"]) EXPECT_TRUE(ref["pass"].get<bool>()) << ref.dump();
  EXPECT_NE(r.out.find("| GPTQ |"), std::string::npos) << r.out;
  fs::remove_all(out);
}

}  // namespace
}  // namespace qjobs::testing
