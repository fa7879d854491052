// Where a job computes and what it costs: the device and compute dtype,
// chosen once per job (DESIGN.md, "Devices"), and the peak memory of the
// host and of the device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace qjobs::model {

struct Placement {
  c10::Device device = c10::kCPU;       // where tensors live
  std::vector<c10::Device> devices;     // all assigned (devices[0] == device)
  c10::ScalarType dtype = c10::kFloat;  // compute dtype
  std::string describe() const;         // "cuda:0 (2 devices), bfloat16"
};

// CUDA when the worker was given devices (`cuda_visible` non-empty, one
// device per listed id), else the CPU. `dtype`: auto | float32 | bfloat16 |
// float16; auto is bfloat16 on a GPU (float16 where the GPU lacks bfloat16)
// and float32 on the CPU. Throws Error(invalid_input) for another name or
// float16/bfloat16 the device lacks, and Error(internal) when devices are
// given but CUDA is not usable, with cuda_status()'s reason: a GPU asked for
// is never replaced by the CPU.
Placement choose_placement(const std::string& dtype, const char* cuda_visible);

// What this process can do with CUDA. `built`: the libtorch it links has
// CUDA. `usable`: built, a driver loads and at least one device is visible.
// `reason` says why not when !usable ("this qjobs-worker's libtorch 2.11.0
// has no CUDA", "no NVIDIA driver: libcuda.so.1 cannot be loaded", "no CUDA
// device is visible (CUDA_VISIBLE_DEVICES=...)", the CUDA runtime's error).
struct CudaStatus {
  bool built = false;
  bool usable = false;
  int devices = 0;      // visible devices when usable
  std::string runtime;  // CUDA runtime version the libtorch was built with ("13.0"), "" without CUDA
  std::string driver;   // the driver's CUDA version ("13.0"), "" when none loads
  std::string reason;   // why !usable; "" when usable
};
CudaStatus cuda_status();

// Whether CUDA is usable here (cuda_status().usable).
bool cuda_available();

// The libtorch this worker runs on and what it can compute on, as recorded in
// report.json and printed by `qjobs-worker --version`: {"torch": "2.11.0",
// "cuda_built": true, "cuda_runtime": "13.0", "cuda_driver": "13.0"|null,
// "cuda_usable": bool, "cuda_reason": "..."|null, "gpus": [{"name", "capability",
// "memory_mib"}] (usable devices only)}, as a JSON text.
std::string runtime_info_json();

// The process's peak resident set (VmHWM) in bytes, and a reset of it
// (Linux >= 4.0, /proc/self/clear_refs); 0 / false where unavailable.
int64_t host_peak_bytes();
int64_t host_rss_bytes();
bool reset_host_peak();

// The caching allocator's peak of bytes allocated on `d` since the last
// reset, summed over `devices`; nullopt on the CPU or a build without CUDA.
std::optional<int64_t> device_peak_bytes(const std::vector<c10::Device>& devices);
void reset_device_peak(const std::vector<c10::Device>& devices);
// Free and total bytes of a CUDA device; nullopt where unknown.
std::optional<std::pair<int64_t, int64_t>> device_memory(const c10::Device& d);

}  // namespace qjobs::model
