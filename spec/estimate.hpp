// What a job will cost, said before it starts (the dry run of `jobctl
// validate` and the submit page, and stored with the job for its report):
// time, host memory, device memory and disk, from the model's config.json,
// the spec, and the rates measured on the device that would run it
// (`qjobs-worker gemm`: float32 GEMM FLOP/s and elementwise passes/s).
//
// Time is work divided by rate: the calibration of every block as its
// algorithm's row counts it (AlgorithmInfo::block_work), and the forwards
// of the perplexity tasks whose window count is given. Memory is one block's
// float32 weights and activations, the algorithm's working set, and on the
// host what stays resident (embeddings, the output head, the runtime). Disk
// is the output, packed as the per-Linear plan says, and the calibration
// state the worker keeps between blocks. What a figure leaves out is said
// in its notes. No libtorch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spec/job_spec.hpp"

namespace qjobs {

// Rates of one device, as `qjobs-worker gemm` measures them.
struct DeviceRates {
  std::string device;       // "cpu", "cuda:0"
  double gemm_flops = 0;    // float32 matrix products, FLOP/s
  double factor_flops = 0;  // float32 Cholesky factors, FLOP/s
  double elementwise = 0;   // float32 elementwise passes (read and write of an element) per second
  std::string measured_at;  // ISO time
};

struct EstimateStage {
  std::string name;  // "calibrate", "evaluate"
  double gemm_flops = 0;
  double factor_flops = 0;
  double elementwise = 0;
  double seconds = -1;  // -1: no rate
};

struct JobEstimate {
  std::vector<EstimateStage> stages;
  double seconds = -1;  // the stages' sum; -1 when no rate is known
  int64_t host_bytes = 0;
  int64_t device_bytes = 0;  // 0 on a CPU
  int64_t disk_bytes = 0;    // the output and the calibration state at their largest
  int64_t output_bytes = 0;  // the model folder the export writes
  int64_t original_bytes = 0;
  std::optional<DeviceRates> rates;
  std::vector<std::string> notes;  // what the figures leave out
};

// The estimate of `spec` on a model of config.json `config` (one the model
// reader accepts), or nullopt with *why set when it cannot be made (a
// config the reader refuses). `rates` null: no time, the rest still. `gpu`:
// the job would compute on a GPU (device memory is then its working set).
std::optional<JobEstimate> estimate_job(const JobSpec& spec, const nlohmann::json& config, const DeviceRates* rates,
                                        bool gpu, std::string* why = nullptr);

nlohmann::json to_json(const JobEstimate& e);
nlohmann::json to_json(const DeviceRates& r);
std::optional<DeviceRates> device_rates_from_json(const nlohmann::json& j);

}  // namespace qjobs
