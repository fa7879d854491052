#include "jobs/model/device.hpp"

#include <fstream>
#include <sstream>

#include <ATen/Context.h>

#include "common/error.hpp"
#include "common/strings.hpp"

// The CUDA parts build only against a CUDA libtorch (whose headers bring the
// CUDA runtime's); Debian's CPU libtorch has neither.
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && __has_include(<cuda_runtime_api.h>)
#define QJOBS_HAVE_CUDA 1
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#else
#define QJOBS_HAVE_CUDA 0
#endif

namespace qjobs::model {

std::string Placement::describe() const {
  std::string s = device.str();
  if (devices.size() > 1) s += " (" + std::to_string(devices.size()) + " devices)";
  return s + ", " + std::string(c10::toString(dtype));
}

bool cuda_available() { return at::hasCUDA(); }

namespace {

bool device_has_bf16(const c10::Device& d) {
#if QJOBS_HAVE_CUDA
  const auto* p = at::cuda::getDeviceProperties(d.index());
  return p->major >= 8;  // Ampere and later
#else
  return false;
#endif
}

}  // namespace

Placement choose_placement(const std::string& dtype, const char* cuda_visible) {
  Placement p;
  const std::string visible = cuda_visible ? trim(cuda_visible) : "";
  if (!visible.empty() && cuda_available()) {
    int64_t n = 0;
    for (const auto& id : split(visible, ','))
      if (!trim(id).empty()) p.devices.emplace_back(c10::kCUDA, static_cast<c10::DeviceIndex>(n++));
    const auto have = std::max<int64_t>(1, static_cast<int64_t>(at::getNumGPUs()));
    while (static_cast<int64_t>(p.devices.size()) > have) p.devices.pop_back();
    if (p.devices.empty()) p.devices.emplace_back(c10::kCUDA, 0);
    p.device = p.devices[0];
  } else {
    p.devices = {c10::kCPU};
  }
  const bool gpu = p.device.is_cuda();
  if (dtype == "auto") p.dtype = gpu ? (device_has_bf16(p.device) ? c10::kBFloat16 : c10::kHalf) : c10::kFloat;
  else if (dtype == "float32") p.dtype = c10::kFloat;
  else if (dtype == "bfloat16") p.dtype = c10::kBFloat16;
  else if (dtype == "float16") p.dtype = c10::kHalf;
  else throw Error(ErrorKind::invalid_input, "DTYPE must be auto, float32, bfloat16 or float16, not '" + dtype + "'");
  if (gpu && p.dtype == c10::kBFloat16 && !device_has_bf16(p.device))
    throw Error(ErrorKind::invalid_input, "DTYPE bfloat16: GPU " + p.device.str() + " has no bfloat16; use float16 or auto");
  return p;
}

namespace {

int64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.rfind(k, 0) == 0) {
      std::istringstream is(line.substr(k.size()));
      int64_t v = 0;
      is >> v;
      return v;
    }
  return 0;
}

}  // namespace

int64_t host_peak_bytes() { return status_kib("VmHWM") * 1024; }
int64_t host_rss_bytes() { return status_kib("VmRSS") * 1024; }

bool reset_host_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

std::optional<int64_t> device_peak_bytes(const std::vector<c10::Device>& devices) {
#if QJOBS_HAVE_CUDA
  int64_t total = 0;
  bool any = false;
  for (const auto& d : devices) {
    if (!d.is_cuda()) continue;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    // Entry 0 is the aggregate over pools (StatType::AGGREGATE, which newer
    // releases declare in another namespace).
    total += stats.allocated_bytes[0].peak;
    any = true;
  }
  if (any) return total;
#endif
  return std::nullopt;
}

void reset_device_peak(const std::vector<c10::Device>& devices) {
#if QJOBS_HAVE_CUDA
  for (const auto& d : devices)
    if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#endif
}

std::optional<std::pair<int64_t, int64_t>> device_memory(const c10::Device& d) {
#if QJOBS_HAVE_CUDA
  if (d.is_cuda()) {
    size_t free_b = 0, total_b = 0;
    c10::cuda::CUDAGuard guard(d.index());
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      return std::make_pair(static_cast<int64_t>(free_b), static_cast<int64_t>(total_b));
  }
#endif
  return std::nullopt;
}

}  // namespace qjobs::model
