// Perplexity throughput on a Llama-shaped model with random weights, against
// this machine's own GEMM rate measured in the same run, in float32 and
// bfloat16; and the peak RSS of loading against the checkpoint's size.
//   ppl_bench [--hidden 1024 --layers 8 --intermediate 2816 --vocab 32000
//              --seqlen 1024 --windows 4]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "jobs/eval/perplexity.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/random_model.hpp"

namespace fs = std::filesystem;
using namespace qjobs;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// GFLOP/s of [m,k] x [k,n] in `dtype`, best of several runs.
double gemm_rate(int64_t m, int64_t k, int64_t n, at::ScalarType dtype) {
  const auto a = at::randn({m, k}).to(dtype), b = at::randn({n, k}).to(dtype);
  at::linear(a, b);  // warm-up
  double best = 0;
  for (int r = 0; r < 15; ++r) {
    const auto t = std::chrono::steady_clock::now();
    auto c = at::linear(a, b);
    const double s = seconds_since(t);
    best = std::max(best, 2.0 * m * k * n / s / 1e9);
  }
  return best;
}

// Peak RSS (MiB) of a fresh process (this program with --load-only) that
// loads the checkpoint and touches every weight once, and its RSS before
// loading (the runtime's own share).
std::pair<double, double> load_peak_rss_mib(const fs::path& dir, at::ScalarType dtype) {
  const std::string cmd = "/proc/self/exe";
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  const std::string line =
      std::string(self) + " --load-only " + dir.string() + (dtype == at::kBFloat16 ? " bf16" : " f32");
  FILE* p = popen(line.c_str(), "r");
  double before = 0, peak = 0;
  if (p && std::fscanf(p, "%lf %lf", &before, &peak) != 2) peak = -1;
  if (p) pclose(p);
  return {before, peak};
}

double rss_now_mib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  double kb = 0;
  while (in >> key)
    if (key == "VmRSS:") {
      in >> kb;
      break;
    }
  return kb / 1024.0;
}

int load_only(const char* dir, const char* dtype) {
  const double before = rss_now_mib();
  model::LoadOptions lo;
  lo.dtype = std::string(dtype) == "bf16" ? at::kBFloat16 : at::kFloat;
  auto m = model::LlamaModel::load(model::Checkpoint::open(dir), lo);
  double sum = 0;
  for (auto& [name, t] : m.parameters()) sum += t->sum().item<double>();  // touch every page
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("%f %f %f\n", before, ru.ru_maxrss / 1024.0, sum);
  return 0;
}

// Seconds one window's Linear GEMMs take on their own: every decoder Linear
// and lm_head at the model's shapes, on [T, in] inputs (best of 3).
double linear_seconds(const model::RandomModelOptions& o, int64_t T, at::ScalarType dtype) {
  const int64_t hd = o.hidden / o.heads;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      // (in, out) per layer
      {o.hidden, o.hidden},       {o.hidden, o.kv_heads * hd}, {o.hidden, o.kv_heads * hd}, {o.hidden, o.hidden},
      {o.hidden, o.intermediate}, {o.hidden, o.intermediate},  {o.intermediate, o.hidden}};
  std::vector<std::pair<at::Tensor, at::Tensor>> ops;
  for (const auto& [in, out] : shapes) ops.emplace_back(at::randn({T, in}).to(dtype), at::randn({out, in}).to(dtype));
  const auto head_x = at::randn({T, o.hidden}).to(dtype), head_w = at::randn({o.vocab, o.hidden}).to(dtype);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t = std::chrono::steady_clock::now();
    for (int64_t l = 0; l < o.layers; ++l)
      for (const auto& [x, w] : ops) at::linear(x, w);
    at::linear(head_x, head_w);
    best = std::min(best, seconds_since(t));
  }
  return best;
}

// Perplexity over `windows` random windows after one warm-up window.
eval::PerplexityResult timed_perplexity(const model::LlamaModel& m, int64_t vocab, int64_t seqlen, int64_t windows) {
  const auto ids = at::randint(0, vocab, {seqlen * (windows + 1)}, at::kLong);
  eval::PerplexityOptions po;
  po.seqlen = seqlen;
  po.num_samples = 1;
  eval::perplexity(m, ids, po);  // warm-up
  po.num_samples = windows;
  return eval::perplexity(m, ids, po);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--load-only") return load_only(argv[2], argv[3]);
  model::RandomModelOptions o;
  o.hidden = 1024;
  o.layers = 8;
  o.intermediate = 2816;
  o.heads = 16;
  o.kv_heads = 16;
  o.vocab = 32000;
  int64_t seqlen = 1024, windows = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--hidden") o.hidden = v;
    else if (k == "--layers") o.layers = v;
    else if (k == "--intermediate") o.intermediate = v;
    else if (k == "--vocab") o.vocab = v;
    else if (k == "--heads") o.heads = o.kv_heads = v;
    else if (k == "--seqlen") seqlen = v;
    else if (k == "--windows") windows = v;
  }
  const fs::path dir = fs::temp_directory_path() / ("qjobs_ppl_bench_" + std::to_string(getpid()));
  std::printf(
      "model: hidden %ld, layers %ld, intermediate %ld, vocab %ld, heads %ld; seqlen %ld, %ld windows; %d threads\n",
      o.hidden, o.layers, o.intermediate, o.vocab, o.heads, seqlen, windows, at::get_num_threads());

  std::printf(
      "\n| dtype | GEMM GFLOP/s (T x hidden x intermediate) | ppl tokens/s | model GFLOP/s | share of GEMM rate | "
      "Linears alone s/window (GFLOP/s) | rest s/window | load peak RSS MiB | checkpoint MiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [name, dtype] :
       std::vector<std::pair<std::string, at::ScalarType>>{{"float32", at::kFloat}, {"bfloat16", at::kBFloat16}}) {
    fs::remove_all(dir);
    o.dtype = name;
    model::write_random_llama(dir, o);
    uint64_t bytes = 0;
    for (const auto& e : fs::directory_iterator(dir)) bytes += fs::file_size(e.path());

    double gemm = gemm_rate(seqlen, o.hidden, o.intermediate, dtype);
    model::LoadOptions lo;
    lo.dtype = dtype;
    const auto m = model::LlamaModel::load(model::Checkpoint::open(dir), lo);
    const auto r = timed_perplexity(m, o.vocab, seqlen, windows);
    gemm = std::max(gemm, gemm_rate(seqlen, o.hidden, o.intermediate, dtype));  // best of before and after

    // FLOPs: 2 x (matmul parameters) per token, plus attention scores and
    // weighted values computed over the full T x T block.
    const double head_dim = static_cast<double>(o.hidden / o.heads);
    const double linear_params =
        static_cast<double>(o.layers) *
            (2.0 * o.hidden * o.hidden + 2.0 * o.hidden * (o.kv_heads * head_dim) + 3.0 * o.hidden * o.intermediate) +
        static_cast<double>(o.vocab) * o.hidden;
    const double tokens = static_cast<double>(windows * seqlen);
    const double attn = static_cast<double>(o.layers) * windows * 4.0 * seqlen * seqlen * head_dim * o.heads;
    const double gflops = (2.0 * linear_params * tokens + attn) / r.seconds / 1e9;
    // Where the time goes: the Linears alone at their shapes, and everything
    // else (attention, norms, RoPE, SiLU, log-softmax and NLL) as the rest.
    const double per_window = r.seconds / static_cast<double>(windows);
    const double lin = linear_seconds(o, seqlen, dtype);
    const double lin_gflops = 2.0 * linear_params * static_cast<double>(seqlen) / lin / 1e9;
    const auto [base_rss, peak_rss] = load_peak_rss_mib(dir, dtype);
    std::printf(
        "| %s | %.1f | %.0f | %.1f | %.0f%% | %.3f of %.3f (%.1f) | %.3f | %.0f (runtime %.0f + %.0f) | %.0f |\n",
        name.c_str(), gemm, r.tokens_per_s, gflops, 100.0 * gflops / gemm, lin, per_window, lin_gflops,
        per_window - lin, peak_rss, base_rss, peak_rss - base_rss, bytes / 1048576.0);
  }

  // The cost of simulating activation / KV quantization (float32): the same
  // windows with every Linear's input and the KV cache fake-quantized.
  fs::remove_all(dir);
  o.dtype = "float32";
  model::write_random_llama(dir, o);
  std::printf("\n| simulated quantization (float32) | ppl tokens/s | vs none |\n|---|---|---|\n");
  double none_tps = 0;
  for (const std::string kind : {"none", "int_token", "fp8_token"})
    for (const bool kv : {false, true}) {
      if (kind == "none" && kv) continue;
      auto m = model::LlamaModel::load(model::Checkpoint::open(dir));
      nlohmann::json acts = nlohmann::json::object();
      if (kind != "none")
        for (int64_t l = 0; l < o.layers; ++l)
          for (auto& [n, lin] : m.layers()[static_cast<std::size_t>(l)].linears())
            acts["model.layers." + std::to_string(l) + "." + n] = {{"kind", kind}, {"bits", 8}};
      nlohmann::json q = {{"activations", acts}};
      if (kv) q["kv_cache"] = {{"kind", "int"}, {"bits", 4}};
      m.apply_simulated_quantization(q);
      const double tps = timed_perplexity(m, o.vocab, seqlen, windows).tokens_per_s;
      if (kind == "none") none_tps = tps;
      const std::string label = kind == "none" ? "none"
                                               : (kind == "int_token" ? "A8 int per token" : "A8 FP8 per token") +
                                                     std::string(kv ? " + KV4 int" : "");
      std::printf("| %s | %.0f | %.2f |\n", label.c_str(), tps, tps / none_tps);
      std::fflush(stdout);
    }
  fs::remove_all(dir);
  return 0;
}
