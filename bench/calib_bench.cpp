// AWQ and GPTQ calibration time per block and in total on a Llama-shaped
// random model, with the share of that time spent in GEMM kernels (aten::mm,
// addmm, bmm, as libtorch's profiler records them), and the machine's GEMM
// rate for scale.
//   calib_bench [--hidden 1024 --layers 8 --intermediate 2816 --vocab 32000
//                --samples 32 --seqlen 512]
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "common/job_dir.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/quant/awq.hpp"
#include "jobs/quant/gptq.hpp"

namespace fs = std::filesystem;
using namespace qjobs;

int main(int argc, char** argv) {
  model::RandomModelOptions o;
  o.hidden = 1024;
  o.layers = 8;
  o.intermediate = 2816;
  o.heads = o.kv_heads = 16;
  o.vocab = 32000;
  int64_t samples = 32, seqlen = 512;
  bool profile = false;  // --profile 1: libtorch's profiler (slow, heavy on memory)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--hidden") o.hidden = v;
    else if (k == "--layers") o.layers = v;
    else if (k == "--intermediate") o.intermediate = v;
    else if (k == "--vocab") o.vocab = v;
    else if (k == "--samples") samples = v;
    else if (k == "--seqlen") seqlen = v;
    else if (k == "--profile") profile = v != 0;
  }
  const fs::path dir = fs::temp_directory_path() / ("qjobs_calib_bench_" + std::to_string(getpid()));
  fs::remove_all(dir);
  model::write_random_llama(dir / "m", o);
  const auto ckpt = model::Checkpoint::open(dir / "m");
  const auto ids = at::randint(0, o.vocab, {samples, seqlen}, at::kLong);
  std::printf("model: hidden %ld, layers %ld, intermediate %ld; calibration %ld x %ld; W4 g128\n", o.hidden, o.layers,
              o.intermediate, samples, seqlen);
  std::fflush(stdout);
  std::printf("\n| algorithm | total s | s per block (first / median / last) | GEMM share |\n|---|---|---|---|\n");
  for (const std::string name : {"AutoAWQ", "GPTQ"}) {
    quant::QuantInputs in;
    in.ckpt = &ckpt;
    in.params = {{"W_BIT", 4}, {"Q_GROUP_SIZE", 128}, {"ZERO_POINT", true}};
    in.calibration = [&] { return ids; };
    std::vector<double> marks;
    const auto t0 = std::chrono::steady_clock::now();
    in.progress = [&](int64_t, int64_t, const std::string&) {
      marks.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    };
    const fs::path trace = dir / (name + ".json");
    if (profile) {
      torch::autograd::profiler::RecordProfile guard(trace.string());
      if (name == "AutoAWQ") quant::AwqAlgorithm().run(in);
      else quant::GptqAlgorithm().run(in);
    } else {
      if (name == "AutoAWQ") quant::AwqAlgorithm().run(in);
      else quant::GptqAlgorithm().run(in);
    }
    const double total = marks.back();
    std::vector<double> per;
    for (std::size_t i = 1; i < marks.size(); ++i) per.push_back(marks[i] - marks[i - 1]);
    auto sorted = per;
    std::sort(sorted.begin(), sorted.end());
    // Chrome trace: complete events with microsecond durations.
    double gemm_us = 0;
    const auto events = profile ? nlohmann::json::parse(read_file(trace)) : nlohmann::json::array();
    for (const auto& e : events)
      if (e.is_object() && e.contains("dur")) {
        const std::string n = e.value("name", "");
        if (n == "aten::mm" || n == "aten::addmm" || n == "aten::bmm") gemm_us += e["dur"].get<double>();
      }
    std::printf("| %s | %.1f | %.2f / %.2f / %.2f | %s |\n", name.c_str(), total, per.front(),
                sorted[sorted.size() / 2], per.back(),
                profile ? (std::to_string(static_cast<int>(100.0 * gemm_us / 1e6 / total)) + "%").c_str() : "not profiled");
    std::fflush(stdout);
  }
  fs::remove_all(dir);
  return 0;
}
