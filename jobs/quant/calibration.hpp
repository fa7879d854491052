// The calibration engine: runs the model block by block over captured
// calibration inputs, so memory stays near one block plus its activations.
// An algorithm calibrates and quantizes block i from inputs(), then hands
// the inputs of block i+1 to advance(). With a state folder, every finished
// block is saved (its weights, its errors, the next inputs) under a
// fingerprint of model, parameters and calibration data, and a restarted
// run resumes after the last saved block.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/model/llama_model.hpp"
#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class CalibrationEngine {
 public:
  // ids: int64 [n, seqlen]; mini-batches of `batch` windows.
  CalibrationEngine(model::LlamaModel& model, const at::Tensor& ids, int64_t batch, std::filesystem::path state_dir,
                    const std::string& fingerprint);

  // The first block still to do (0 without saved state). Restores the saved
  // blocks' weights into the model and their errors into `errors`.
  int64_t resume(std::vector<LayerError>& errors, std::map<std::string, exporter::IntWeight>& ints);

  // Inputs of the current block: mini-batches [b, T, hidden].
  const std::vector<at::Tensor>& inputs() const { return inputs_; }
  // Block `layer` applied to the current inputs with its current weights.
  std::vector<at::Tensor> forward(int64_t layer, const model::LinearHook* hook = nullptr) const;
  // Every input of the named Linears of block `layer`, float32 [tokens, in].
  std::map<std::string, at::Tensor> capture_inputs(int64_t layer, const std::vector<std::string>& names) const;

  // Block `layer` is done: save it (when a state folder is set) and move on.
  void advance(int64_t layer, std::vector<at::Tensor> next_inputs, const std::vector<LayerError>& layer_errors,
               const std::map<std::string, exporter::IntWeight>& ints);

  model::LlamaModel& model() { return model_; }

 private:
  model::LlamaModel& model_;
  std::vector<at::Tensor> inputs_;
  std::filesystem::path dir_;  // state_dir / fingerprint, or empty
};

// sha256 over config.json, the weight files' names and sizes, `params` and
// the calibration ids: what a saved block state depends on.
std::string calibration_fingerprint(const model::Checkpoint& ckpt, const nlohmann::json& params, const at::Tensor& ids);

// Which captured input each decoder Linear reads ("self_attn.k_proj" ->
// "self_attn.q_proj": q/k/v share one input, gate/up another), and the four
// distinct inputs of a block.
const std::map<std::string, std::string>& linear_input_source();
const std::vector<std::string>& block_input_names();

// Relative output error of W' against W on inputs x [tokens, in].
double relative_output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_q);

// The model tensors of block `layer` by checkpoint name, converted to the
// stored dtype: what a calibrating algorithm replaces in the checkpoint.
void collect_block(const model::Checkpoint& ckpt, model::LlamaModel& m, int64_t layer,
                   std::map<std::string, at::Tensor>& replaced);

}  // namespace qjobs::quant
