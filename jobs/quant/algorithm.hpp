// The one interface every quantization algorithm implements. An algorithm
// is a class in its own file under jobs/quant/, registered by the name the
// spec uses in registry.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace qjobs::model {
class Checkpoint;
}

namespace qjobs::quant {

// Called as work advances; it may throw Error(cancelled) to stop the run.
using ProgressFn = std::function<void(int64_t done, int64_t total, const std::string& what)>;

struct LayerError {
  std::string name;
  double rel_fro_err = 0;  // ||W' - W|| / ||W||
  double max_abs_err = 0;
};

struct QuantOutput {
  // Replacement tensors by name, in the checkpoint's stored dtype; names not
  // present keep the original tensor.
  std::map<std::string, at::Tensor> replaced;
  nlohmann::json quantization_config;  // written into config.json
  std::vector<LayerError> layer_errors;
};

class QuantAlgorithm {
 public:
  virtual ~QuantAlgorithm() = default;
  // Quantizes `ckpt` with the validated algorithm section `params`
  // (defaults applied). REQUIRES: params passed the catalog schema.
  virtual QuantOutput run(const model::Checkpoint& ckpt, const nlohmann::json& params,
                          const ProgressFn& progress) = 0;
};

}  // namespace qjobs::quant
