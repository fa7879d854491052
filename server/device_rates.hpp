// The rates of the device this server's local jobs run on (spec/estimate.hpp),
// measured once by the worker itself (`qjobs-worker gemm`) and kept, per
// device, in user_data/device_rates.json, so that a restart does not
// measure again. The first estimate waits for the measurement (a second or
// two: the worker loads libtorch and times a 2048^3 product); a failed one
// is retried after a minute, never more often. Rates kept by another machine
// (the file names the host that measured them) are measured again.
// Thread safety: get() may run on several threads at once.
#pragma once

#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "spec/estimate.hpp"

namespace qjobs::server {

class DeviceRateProbe {
 public:
  // `worker`: the qjobs-worker binary; `file`: where the rates are kept;
  // `gpu`: jobs run on GPUs (the worker places the product as a job's would be).
  DeviceRateProbe(std::filesystem::path worker, std::filesystem::path file, bool gpu);

  // The rates, kept or measured now (`measure`; otherwise nullopt when none
  // is kept); nullopt with *why set when the measurement failed (or failed
  // less than a minute ago).
  std::optional<DeviceRates> get(bool measure, std::string* why);

 private:
  std::filesystem::path worker_, file_;
  std::string device_key_;  // "cpu" or "gpu": the key in the file
  std::mutex mutex_;
  std::optional<DeviceRates> rates_;
  std::string failure_;
  std::chrono::steady_clock::time_point failed_at_{};
};

}  // namespace qjobs::server
