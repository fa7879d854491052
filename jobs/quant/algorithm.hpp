// The one interface every quantization algorithm implements. An algorithm
// is a class in its own file under jobs/quant/, registered by the name the
// spec uses in registry.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/numeric/quantized_weight.hpp"
#include "jobs/model/llama_model.hpp"
#include "spec/linear_plan.hpp"

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
  double rel_out_err = -1;  // ||X W'^T - X W^T|| / ||X W^T|| on calibration inputs; -1 = not measured
};

struct QuantInputs {
  const model::Checkpoint* ckpt = nullptr;
  // The algorithm section, defaults applied, as the spec holds it: parsed
  // into the algorithm's typed parameters, recorded in fingerprints. The
  // weight settings of each Linear are in `plan`, never read from here.
  nlohmann::json params;
  // Every quantized decoder Linear's weight settings (jobs/quant/layer_plan.hpp),
  // built by the pipeline from the section and the checkpoint's shapes.
  LinearPlan plan;
  // The export keeps act-order's groups in column order only (compressed-
  // tensors, vLLM): GPTQ's DESC_ACT then runs with static groups.
  bool column_order_groups = false;
  model::LoadOptions compute;  // dtype/device for calibration forwards
  // Calibration token windows, int64 [n, seqlen]; called once, only by
  // algorithms that calibrate. Throws when the spec names no usable data.
  std::function<at::Tensor()> calibration;
  std::filesystem::path state_dir;  // per-block resume state; empty = none
  ProgressFn progress;
  // false: a Linear that has an integer or W8A8 form is not also kept as a
  // float tensor in `replaced` (a packed export never reads it; for an 8B
  // model that is 14 GiB of disk and writes saved).
  bool keep_float_weights = true;
  // The export stores integer zero points (every packed format): HQQ rounds
  // its real-valued ones as its last step.
  bool packed_export = false;
  // false: the export reads no integer codes (fake_quant, GGUF write the
  // float replacements): a Linear's codes are not kept beside its float
  // copy (scales, zero points and settings stay, for the report). On disk
  // that is a byte per weight of calibration state saved.
  bool keep_int_codes = true;
};

struct QuantOutput {
  // Replacement tensors by checkpoint name, in the checkpoint's stored dtype;
  // names not present keep the original tensor.
  std::map<std::string, at::Tensor> replaced;
  // Tensors the checkpoint does not have (an untied lm_head.weight), and
  // keys merged into config.json ({"tie_word_embeddings": false}).
  std::map<std::string, at::Tensor> added;
  nlohmann::json config_patch = nlohmann::json::object();
  nlohmann::json quantization_config;  // written into config.json
  std::vector<LayerError> layer_errors;
  int64_t resumed_blocks = 0;  // blocks restored from saved state
  // Mixture-of-experts blocks: per block prefix ("model.layers.3."), the
  // calibration tokens routed to each expert ("tokens", top-k picks),
  // "min_tokens", and "fallback": the experts that received fewer and were
  // calibrated on every token of the block instead (calibration.hpp).
  nlohmann::json experts = nlohmann::json::object();
  // Integer form of every quantized Linear by its name without ".weight",
  // for the packed export formats; absent when the algorithm has none (HQQ).
  std::map<std::string, numeric::IntWeight> int_weights;
  // W8A8 form of every quantized Linear (FP8, SmoothQuant), for compressed-
  // tensors float-quantized (w8a8_float) or int-quantized; names as
  // int_weights. k_scales / v_scales: the FP8 KV cache's, per layer.
  std::map<std::string, numeric::W8A8Weight> w8a8_weights;
  // NVFP4 / MXFP4 form of every quantized Linear (ALGORITHM NVFP4, MXFP4).
  std::map<std::string, numeric::Fp4Weight> fp4_weights;
  bool w8a8_float = true;
  std::vector<double> k_scales, v_scales;
  std::vector<std::string> ignored;  // Linears kept in full precision
};

class QuantAlgorithm {
 public:
  virtual ~QuantAlgorithm() = default;
  // REQUIRES: in.params passed the catalog schema.
  virtual QuantOutput run(const QuantInputs& in) = 0;
};

}  // namespace qjobs::quant
