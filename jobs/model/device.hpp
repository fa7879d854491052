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
  c10::Device device = c10::kCPU;            // where tensors live
  std::vector<c10::Device> devices;          // all assigned (devices[0] == device)
  c10::ScalarType dtype = c10::kFloat;       // compute dtype
  std::string describe() const;              // "cuda:0 (2 devices), bfloat16"
};

// CUDA when this libtorch has CUDA and the worker was given devices
// (`cuda_visible` non-empty, one device per listed id), else the CPU.
// `dtype`: auto | float32 | bfloat16 | float16; auto is bfloat16 on a GPU
// (float16 where the GPU lacks bfloat16) and float32 on the CPU. Throws
// Error(invalid_input) for another name or float16/bfloat16 the device lacks.
Placement choose_placement(const std::string& dtype, const char* cuda_visible);

// Whether this build can use CUDA at all (a CUDA libtorch and a driver).
bool cuda_available();

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
