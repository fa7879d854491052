#include "server/device_rates.hpp"

#include <ctime>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/job_dir.hpp"
#include "server/command.hpp"

namespace qjobs::server {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_file_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return json::object();
  std::stringstream ss;
  ss << in.rdbuf();
  // A file of ours, but a damaged one is measured again, never trusted.
  auto j = json::parse(ss.str(), nullptr, false);
  return j.is_object() ? j : json::object();
}

// This machine's name: rates kept by a server that ran elsewhere (a
// user_data folder moved or shared) are measured again.
std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

DeviceRateProbe::DeviceRateProbe(fs::path worker, fs::path file, bool gpu)
    : worker_(std::move(worker)), file_(std::move(file)), device_key_(gpu ? "gpu" : "cpu") {}

std::optional<DeviceRates> DeviceRateProbe::get(bool measure, std::string* why) {
  std::lock_guard lock(mutex_);
  if (rates_) return rates_;
  const json kept_json = read_file_json(file_).value(device_key_, json::object());
  if (auto kept =
          kept_json.value("host", std::string()) == host_name() ? device_rates_from_json(kept_json) : std::nullopt) {
    rates_ = kept;
    return rates_;
  }
  if (!measure) return std::nullopt;
  if (!failure_.empty() && std::chrono::steady_clock::now() - failed_at_ < std::chrono::minutes(1)) {
    if (why) *why = failure_;
    return std::nullopt;
  }
  CommandOptions opt;
  opt.timeout_s = 60;
  const auto r = run_command(
      {worker_.string(), "gemm", "--m", "2048", "--n", "2048", "--k", "2048", "--reps", "5", "--dtype", "float32"},
      opt);
  const auto out = json::parse(r.out, nullptr, false);
  if (!r.ok() || !out.is_object() || !out.contains("gflops_best") || !out["gflops_best"].is_number()) {
    failure_ = "the device's rates could not be measured (qjobs-worker gemm: " + r.summary() + ")";
    failed_at_ = std::chrono::steady_clock::now();
    if (why) *why = failure_;
    return std::nullopt;
  }
  DeviceRates d;
  d.device = out.value("device", device_key_);
  d.gemm_flops = out["gflops_best"].get<double>() * 1e9;
  d.factor_flops = out.value("factor_gflops", 0.0) * 1e9;
  d.elementwise = out.value("elementwise_per_s", 0.0);
  d.measured_at = now_iso();
  rates_ = d;
  json all = read_file_json(file_);
  all[device_key_] = to_json(d);
  all[device_key_]["host"] = host_name();
  try {
    write_file_atomic(file_, all.dump(2) + "\n");
  } catch (const std::exception&) {
    // Kept in memory; measured again after a restart.
  }
  return rates_;
}

}  // namespace qjobs::server
