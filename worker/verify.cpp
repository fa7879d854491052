#include "worker/verify.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_config.hpp"
#include "jobs/model/safetensors.hpp"

extern char** environ;

namespace qjobs::worker {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kProjections = 4;
constexpr double kMaxLogitParams = 2e9;

fs::path reference_python(const Environment& env) {
  if (!env.reference_python.empty()) return env.reference_python;
#ifdef QJOBS_DEFAULT_REFERENCE_PYTHON
  return QJOBS_DEFAULT_REFERENCE_PYTHON;
#else
  return {};
#endif
}

// ct_verify.py: QJOBS_VERIFY_SCRIPT, else share/qjobs beside the worker's
// bin/, else the source tree it was built from.
fs::path verify_script(const Environment& env) {
  if (!env.verify_script.empty()) return env.verify_script;
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(exe.parent_path().parent_path() / "share/qjobs/ct_verify.py"))
    return exe.parent_path().parent_path() / "share/qjobs/ct_verify.py";
#ifdef QJOBS_VERIFY_SCRIPT_SOURCE
  if (fs::exists(QJOBS_VERIFY_SCRIPT_SOURCE)) return QJOBS_VERIFY_SCRIPT_SOURCE;
#endif
  return {};
}

// Runs argv with stdout and stderr into files; its exit status (128 + the
// signal when killed).
int run_process(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw Error(ErrorKind::internal, "cannot start " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw Error(ErrorKind::internal, std::string("waitpid: ") + std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string tail_of(const fs::path& p, std::size_t n) {
  std::string s;
  try {
    s = read_file(p);
  } catch (const Error&) {
    return "";
  }
  return s.size() > n ? s.substr(s.size() - n) : s;
}

}  // namespace

std::vector<double> weight_checksums(const at::Tensor& w) {
  const auto flat = w.detach().reshape({-1}).to(at::kCPU);
  const int64_t n = flat.numel();
  std::vector<double> out(1 + kProjections, 0.0);
  constexpr int64_t kStep = int64_t{1} << 20;
  for (int64_t start = 0; start < n; start += kStep) {
    const int64_t len = std::min(kStep, n - start);
    const auto chunk = flat.narrow(0, start, len).to(at::kDouble);
    out[0] += chunk.abs().sum().item<double>();
    const auto idx = at::arange(start, start + len, at::kLong);
    for (int k = 0; k < kProjections; ++k) {
      const auto bits = idx.mul(int64_t{2654435761})
                            .add(int64_t{k} * 40503)
                            .remainder(int64_t{1} << 32)
                            .bitwise_right_shift(16)
                            .bitwise_and(1);
      out[1 + k] += (chunk * (1 - 2 * bits).to(at::kDouble)).sum().item<double>();
    }
  }
  return out;
}

void VerifyManifest::add(const std::string& name, const at::Tensor& weight, double tolerance) {
  linears[name] = {{"checksums", weight_checksums(weight)}, {"tolerance", tolerance}};
}

VerifyResult verify_packed(const fs::path& model_dir, const VerifyManifest& manifest, const fs::path& work,
                           const Environment& env) {
  VerifyResult r;
  const fs::path py = reference_python(env);
  const fs::path script = verify_script(env);
  if (py.empty() || !fs::exists(py)) {
    r.skipped =
        "no Python with the reference stack on this host (set QJOBS_REFERENCE_PYTHON to one with "
        "compressed-tensors and transformers)";
    return r;
  }
  if (script.empty()) {
    r.skipped = "ct_verify.py is not installed beside the worker (share/qjobs) nor named by QJOBS_VERIFY_SCRIPT";
    return r;
  }
  fs::create_directories(work);
  // Token windows: 2 x 64 ids from a fixed sequence over the vocabulary.
  const auto ckpt = model::Checkpoint::open(model_dir);
  const auto config = model::ModelConfig::from_json(ckpt.config());
  const int64_t len = std::min<int64_t>(64, std::max<int64_t>(2, config.max_position));
  std::vector<int64_t> flat;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  json tokens = json::array();
  for (int row = 0; row < 2; ++row) {
    json ids = json::array();
    for (int64_t i = 0; i < len; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      const auto id = static_cast<int64_t>((x >> 33) % static_cast<uint64_t>(config.vocab));
      ids.push_back(id);
      flat.push_back(id);
    }
    tokens.push_back(ids);
  }
  write_file_atomic(work / "tokens.json", tokens.dump());
  write_file_atomic(work / "manifest.json", manifest.linears.dump());
  const fs::path ref_logits = work / "reference_logits.safetensors";
  const int rc = run_process(
      {py.string(), script.string(), model_dir.string(), (work / "manifest.json").string(),
       (work / "tokens.json").string(), ref_logits.string(), "--max-params", std::to_string(kMaxLogitParams)},
      work / "reference.json", work / "reference.log");
  const json out = json::parse(tail_of(work / "reference.json", 64 << 20), nullptr, false);
  if (rc == 3 && out.is_object() && out.contains("unavailable")) {
    r.skipped = py.string() + " lacks the reference stack: " + out["unavailable"].dump();
    return r;
  }
  r.ran = true;
  if (out.is_discarded() || !out.is_object()) {
    r.failure = "the reference loader ended (exit status " + std::to_string(rc) +
                ") without a result: " + tail_of(work / "reference.log", 600);
    return r;
  }
  const json versions = out.value("versions", json::object());
  r.record = {{"loader", "compressed-tensors " + versions.value("compressed-tensors", std::string("?")) +
                             " (transformers " + versions.value("transformers", std::string("?")) + ")"},
              {"linears", manifest.linears.size()}};
  if (!out.value("ok", false)) {
    r.failure =
        r.record["loader"].get<std::string>() + " refuses the checkpoint: " + out.value("error", std::string("?"));
    return r;
  }
  // 1. The weights the file decodes to, against those the job computed.
  double worst = 0, logit_tolerance = 1e-4;
  std::string worst_name;
  const json& got = out["checksums"];
  for (const auto& [name, want] : manifest.linears.items()) {
    if (!got.contains(name)) {
      r.failure = "the reference decoded no weight for " + name;
      return r;
    }
    const auto mine = want["checksums"].get<std::vector<double>>();
    const auto theirs = got[name].get<std::vector<double>>();
    const double tol = want.value("tolerance", 1e-9);
    if (tol > 1e-6) logit_tolerance = 1e-2;
    const double scale = std::max(mine[0], 1e-30);
    for (std::size_t k = 0; k < mine.size() && k < theirs.size(); ++k) {
      const double d = std::abs(mine[k] - theirs[k]) / scale;
      if (d > worst) worst = d, worst_name = name;
      if (d > tol) {
        r.record["weight_max_rel_diff"] = d;
        r.failure = name + ": the weight " + r.record["loader"].get<std::string>() +
                    " decodes from the file is not the one "
                    "the job computed (checksum " +
                    std::to_string(k) + ": " + json(theirs[k]).dump() + " against " + json(mine[k]).dump() + ", " +
                    json(d).dump() + " of sum |w|, tolerance " + json(tol).dump() + ")";
        return r;
      }
    }
  }
  r.record["weight_max_rel_diff"] = worst;
  // 2. transformers' forward pass against qjobs' reader of the same file.
  if (out["logits"].is_null()) {
    r.record["logits"] =
        "not compared: " + out.value("logits_skipped", std::string("the reference ran no forward pass"));
    return r;
  }
  model::LoadOptions o;
  o.simulate_quantization = false;
  at::NoGradGuard no_grad;
  const auto ids = at::tensor(flat, at::kLong).view({2, len});
  const auto mine = model::LlamaModel::load(ckpt, o).forward(ids).to(at::kFloat);
  const auto theirs = model::SafetensorsFile::open(ref_logits).tensor("logits").to(at::kFloat);
  if (theirs.sizes() != mine.sizes()) {
    r.failure = "the reference's logits have another shape than qjobs'";
    return r;
  }
  const double rel = ((mine - theirs).abs().max() / mine.abs().max().clamp_min(1e-30)).item<double>();
  r.record["logit_rel_diff"] = rel;
  r.record["logit_tolerance"] = logit_tolerance;
  if (rel > logit_tolerance)
    r.failure = "transformers' logits of the decompressed checkpoint differ from qjobs' by " + json(rel).dump() +
                " relative (tolerance " + json(logit_tolerance).dump() + ")";
  return r;
}

}  // namespace qjobs::worker
