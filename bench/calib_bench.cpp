// AWQ, GPTQ and QoQ (LMQuant g128) calibration time per block and in total on a Llama-shaped
// random model, with the share of that time spent in GEMM operators (aten::mm,
// addmm, bmm, baddbmm; timed by a RecordFunction observer, which records
// nothing else, unlike the profiler) and in the dense linear algebra GPTQ
// uses (Cholesky, triangular inverse).
// Runs as the worker does: layers streamed from the mapped checkpoint,
// finished blocks spilled to disk, float32 compute; prints the peak RSS of
// each algorithm (VmHWM, reset before each) against the checkpoint size.
//   calib_bench [--hidden 1024 --layers 8 --intermediate 2816 --vocab 32000
//                --heads 16 --kv-heads 16 --dtype float32|bfloat16
//                --samples 8 --seqlen 512 --observe 1 --algos AutoAWQ,GPTQ,LMQuant
//                --experts 0 --top-k 2 --packed 0]
// --packed 1 runs as the worker does for a packed export: quantized Linears
// kept in their integer form only, no float copy.
// With --experts N the model is a Mixtral of N experts per layer (each of
// width --intermediate): the table's block MiB is one decoder block with all
// its experts, what streamed calibration should keep the peak near.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/record_function.h>

#include "common/job_dir.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/device.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/registry.hpp"

namespace fs = std::filesystem;
using namespace qjobs;

namespace {

// Seconds spent in outermost GEMM and linear-algebra operators.
double g_gemm_s = 0, g_linalg_s = 0;
thread_local int t_depth = 0;

struct OpTimer : at::ObserverContext {
  std::chrono::steady_clock::time_point start;
  bool gemm = false;
};

bool is_gemm(const std::string& n) {
  return n == "aten::mm" || n == "aten::addmm" || n == "aten::bmm" || n == "aten::baddbmm" || n == "aten::addbmm";
}
bool is_linalg(const std::string& n) {
  return n.rfind("aten::linalg_", 0) == 0 || n == "aten::cholesky" || n == "aten::cholesky_inverse" ||
         n == "aten::cholesky_solve" || n == "aten::triangular_solve";
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  const std::string n = fn.name();
  if (!is_gemm(n) && !is_linalg(n)) return nullptr;
  if (t_depth++ > 0) return nullptr;  // nested inside a counted op
  auto c = std::make_unique<OpTimer>();
  c->gemm = is_gemm(n);
  c->start = std::chrono::steady_clock::now();
  return c;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  const std::string n = fn.name();
  if (!is_gemm(n) && !is_linalg(n)) return;
  --t_depth;
  if (ctx == nullptr) return;
  auto* c = static_cast<OpTimer*>(ctx);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c->start).count();
  (c->gemm ? g_gemm_s : g_linalg_s) += s;
}

}  // namespace

int main(int argc, char** argv) {
  model::RandomModelOptions o;
  o.hidden = 1024;
  o.layers = 8;
  o.intermediate = 2816;
  o.heads = o.kv_heads = 16;
  o.vocab = 32000;
  int64_t samples = 8, seqlen = 512;
  bool observe = true;
  bool packed = false;  // --observe 0: no operator timing (to measure its overhead)
  std::vector<std::string> algos = {"AutoAWQ", "GPTQ"};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--dtype") {
      o.dtype = argv[i + 1];
      continue;
    }
    if (k == "--algos") {
      algos.clear();
      std::string list = argv[i + 1];
      for (std::size_t p = 0; p <= list.size();) {
        const auto q = std::min(list.find(',', p), list.size());
        algos.push_back(list.substr(p, q - p));
        p = q + 1;
      }
      continue;
    }
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--hidden") o.hidden = v;
    else if (k == "--layers") o.layers = v;
    else if (k == "--intermediate") o.intermediate = v;
    else if (k == "--vocab") o.vocab = v;
    else if (k == "--heads") o.heads = v;
    else if (k == "--kv-heads") o.kv_heads = v;
    else if (k == "--samples") samples = v;
    else if (k == "--seqlen") seqlen = v;
    else if (k == "--observe") observe = v != 0;
    else if (k == "--experts") o.experts = v;
    else if (k == "--packed") packed = v != 0;
    else if (k == "--top-k") o.top_k = v;
  }
  const fs::path dir = fs::temp_directory_path() / ("qjobs_calib_bench_" + std::to_string(getpid()));
  fs::remove_all(dir);
  // Written by a child process, so that none of the generator's memory
  // counts in this process's peak RSS. No torch op has run here yet, so
  // forking is safe.
  const pid_t child = ::fork();
  if (child == 0) {
    model::write_random_llama(dir / "m", o);
    std::_Exit(0);
  }
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "writing the random model failed\n");
    return 1;
  }
  const auto ckpt = model::Checkpoint::open(dir / "m");
  const auto ids = at::randint(0, o.vocab, {samples, seqlen}, at::kLong);
  const double ckpt_mib = static_cast<double>(fs::file_size(dir / "m" / "model.safetensors")) / (1 << 20);
  double block_bytes = 0;
  for (const auto& n : ckpt.tensor_names())
    if (n.rfind("model.layers.0.", 0) == 0) {
      double e = static_cast<double>(model::st_dtype_size(ckpt.info(n).dtype));
      for (auto d : ckpt.info(n).shape) e *= static_cast<double>(d);
      block_bytes += e;
    }
  const double block_mib = block_bytes / (1 << 20);
  std::printf(
      "model: hidden %ld, layers %ld, intermediate %ld, heads %ld / %ld KV, vocab %ld, experts %ld (top-%ld), %s on "
      "disk (%.0f MiB, one block %.0f MiB); calibration %ld x %ld; W4 g128 (LMQuant: QoQ W4A8KV4 g128); float32 "
      "compute, streamed\n",
      o.hidden, o.layers, o.intermediate, o.heads, o.kv_heads, o.vocab, o.experts, o.top_k, o.dtype.c_str(), ckpt_mib,
      block_mib, samples, seqlen);
  std::fflush(stdout);
  if (observe) at::addGlobalCallback(at::RecordFunctionCallback(on_start, on_end).needsInputs(false));
  std::printf(
      "\n| algorithm | total s | s per block (first / median / last) | GEMM share | Cholesky etc. share | peak RSS MiB "
      "| checkpoint MiB |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& name : algos) {
    auto algo = quant::make_algorithm(name);
    if (!algo) {
      std::fprintf(stderr, "unknown algorithm %s\n", name.c_str());
      return 2;
    }
    quant::QuantInputs in;
    in.ckpt = &ckpt;
    in.params = name == "LMQuant" ? nlohmann::json{{"quant_type", "g128"}}
                                  : nlohmann::json{{"W_BIT", 4}, {"Q_GROUP_SIZE", 128}, {"ZERO_POINT", true}};
    in.plan = quant::plan_linears(name, in.params, ckpt);
    in.calibration = [&] { return ids; };
    in.compute.stream_layers = true;
    in.state_dir = dir / ("state-" + name);
    in.keep_float_weights = !packed;
    in.packed_export = packed;
    std::vector<double> marks;
    const auto t0 = std::chrono::steady_clock::now();
    in.progress = [&](int64_t, int64_t, const std::string&) {
      marks.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    };
    g_gemm_s = g_linalg_s = 0;
    model::reset_host_peak();
    const auto out = algo->run(in);
    const double total = marks.back();
    std::vector<double> per;
    for (std::size_t i = 1; i < marks.size(); ++i) per.push_back(marks[i] - marks[i - 1]);
    // RTN reports per tensor, not per block: spread its total evenly.
    if (static_cast<int64_t>(per.size()) != o.layers)
      per.assign(static_cast<std::size_t>(o.layers), total / static_cast<double>(o.layers));
    auto sorted = per;
    std::sort(sorted.begin(), sorted.end());
    std::printf("| %s | %.1f | %.2f / %.2f / %.2f | %.0f%% | %.0f%% | %.0f | %.0f |\n", name.c_str(), total,
                per.front(), sorted[sorted.size() / 2], per.back(), 100.0 * g_gemm_s / total,
                100.0 * g_linalg_s / total, static_cast<double>(model::host_peak_bytes()) / (1 << 20), ckpt_mib);
    std::fflush(stdout);
  }
  fs::remove_all(dir);
  return 0;
}
