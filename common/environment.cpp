#include "common/environment.hpp"

#include <algorithm>
#include <cstdlib>

namespace qjobs {
namespace fs = std::filesystem;

namespace {

std::string var(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

Environment Environment::from_process() {
  Environment e;
  if (const auto d = var("QJOBS_DATA_DIR"); !d.empty()) e.data_dir = d;
  e.cache_dir = var("QJOBS_CACHE_DIR");
  if (!e.cache_dir.empty()) e.hub_caches.push_back(e.cache_dir / "hub");
  if (const auto c = var("HF_HUB_CACHE"); !c.empty()) e.hub_caches.emplace_back(c);
  else if (const auto h = var("HF_HOME"); !h.empty()) e.hub_caches.push_back(fs::path(h) / "hub");
  else e.hub_caches.push_back(fs::path(var("HOME").empty() ? "/root" : var("HOME")) / ".cache" / "huggingface" / "hub");
  if (const auto endpoint = var("HF_ENDPOINT"); !endpoint.empty()) e.hf_endpoint = endpoint;
  e.hf_token = var("HF_TOKEN");
  const auto offline = var("HF_HUB_OFFLINE");
  e.hf_offline = !offline.empty() && offline != "0";
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) e.cuda_visible_devices = v;
  if (const auto a = var("QJOBS_ATTEMPT"); !a.empty()) e.attempt = std::max(1, std::atoi(a.c_str()));
  if (const auto h = var("QJOBS_HEARTBEAT_S"); !h.empty()) {
    char* end = nullptr;
    const double v = std::strtod(h.c_str(), &end);
    if (end != h.c_str() && v > 0) e.heartbeat_s = v;
  }
  e.reference_python = var("QJOBS_REFERENCE_PYTHON");
  e.verify_script = var("QJOBS_VERIFY_SCRIPT");
  if (const auto d = var("QJOBS_TEST_STEP_DELAY_MS"); !d.empty()) e.test.step_delay_ms = std::atoll(d.c_str());
  e.test.corrupt_packed = var("QJOBS_TEST_CORRUPT_PACKED");
  e.test.store_faults = var("QJOBS_TEST_STORE_FAULTS");
  return e;
}

}  // namespace qjobs
