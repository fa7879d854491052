#include "jobs/model/device.hpp"

#include <fstream>
#include <sstream>

#include <ATen/Context.h>
#include <c10/core/DeviceType.h>

#include "common/error.hpp"
#include "common/strings.hpp"

// QJOBS_WITH_CUDA is set by the build (cmake/TorchCheck.cmake) when the
// libtorch it links has CUDA; the CUDA runtime's headers come with it.
#if QJOBS_WITH_CUDA
#include <dlfcn.h>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif
#include <nlohmann/json.hpp>
#include <torch/version.h>

namespace qjobs::model {

std::string Placement::describe() const {
  std::string s = device.str();
  if (devices.size() > 1) s += " (" + std::to_string(devices.size()) + " devices)";
  return s + ", " + std::string(c10::toString(dtype));
}

namespace {

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

#if QJOBS_WITH_CUDA
// 13000 -> "13.0"
std::string cuda_version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
#endif

CudaStatus probe_cuda() {
  CudaStatus s;
#if QJOBS_WITH_CUDA
  s.built = true;
  s.runtime = cuda_version_text(CUDART_VERSION);
  // The driver first: without libcuda the runtime's own error says only
  // "insufficient driver", which sends people after the wrong version.
  if (void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL); h == nullptr) {
    const char* why = dlerror();
    s.reason = std::string("no NVIDIA driver: libcuda.so.1 cannot be loaded (") + (why ? why : "not found") + ")";
    return s;
  } else {
    dlclose(h);
  }
  int driver = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) s.driver = cuda_version_text(driver);
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || (err == cudaSuccess && n == 0)) {
    s.reason = "no CUDA device is visible (CUDA_VISIBLE_DEVICES hides every device, or there is none)";
  } else if (err == cudaErrorInsufficientDriver) {
    s.reason = "the NVIDIA driver supports CUDA " + (s.driver.empty() ? std::string("?") : s.driver) +
               ", older than the CUDA " + s.runtime + " this libtorch was built with";
  } else if (err != cudaSuccess) {
    s.reason = std::string("the CUDA runtime cannot start: ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
  } else {
    s.usable = true;
    s.devices = n;
  }
#else
  s.reason = "this qjobs-worker's libtorch " + torch_version() +
             " has no CUDA (build it against a CUDA libtorch: "
             "scripts/build-worker.sh)";
#endif
  return s;
}

}  // namespace

CudaStatus cuda_status() {
  static const CudaStatus s = probe_cuda();
  return s;
}

bool cuda_available() { return cuda_status().usable; }

std::string runtime_info_json() {
  const auto c = cuda_status();
  nlohmann::json gpus = nlohmann::json::array();
#if QJOBS_WITH_CUDA
  for (int i = 0; c.usable && i < c.devices; ++i) {
    const auto* p = at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(i));
    gpus.push_back({{"name", p->name},
                    {"capability", std::to_string(p->major) + "." + std::to_string(p->minor)},
                    {"memory_mib", static_cast<double>(p->totalGlobalMem) / (1024.0 * 1024.0)}});
  }
#endif
  const auto or_null = [](const std::string& v) { return v.empty() ? nlohmann::json(nullptr) : nlohmann::json(v); };
  return nlohmann::json{{"torch", torch_version()},
                        {"cuda_built", c.built},
                        {"cuda_runtime", or_null(c.runtime)},
                        {"cuda_driver", or_null(c.driver)},
                        {"cuda_usable", c.usable},
                        {"cuda_reason", or_null(c.reason)},
                        {"gpus", gpus}}
      .dump();
}

namespace {

bool device_has_bf16(const c10::Device& d) {
#if QJOBS_WITH_CUDA
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
  if (!visible.empty()) {
    const auto cuda = cuda_status();
    if (!cuda.usable)
      throw Error(ErrorKind::internal,
                  "GPUs were asked for (CUDA_VISIBLE_DEVICES=" + visible + ") but CUDA is not usable: " + cuda.reason);
    int64_t n = 0;
    for (const auto& id : split(visible, ','))
      if (!trim(id).empty()) p.devices.emplace_back(c10::kCUDA, static_cast<c10::DeviceIndex>(n++));
    const auto have = std::max<int64_t>(1, cuda.devices);
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
    throw Error(ErrorKind::invalid_input,
                "DTYPE bfloat16: GPU " + p.device.str() + " has no bfloat16; use float16 or auto");
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
#if QJOBS_WITH_CUDA
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
#if QJOBS_WITH_CUDA
  for (const auto& d : devices)
    if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
#endif
}

std::optional<std::pair<int64_t, int64_t>> device_memory(const c10::Device& d) {
#if QJOBS_WITH_CUDA
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
