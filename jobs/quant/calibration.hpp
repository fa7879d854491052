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
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "jobs/model/llama_model.hpp"
#include "jobs/quant/algorithm.hpp"

namespace qjobs::quant {

class CalibrationEngine {
 public:
  // ids: int64 [n, seqlen]; mini-batches of `batch` windows. With a state
  // folder, finished blocks go to state_dir / fingerprint, where a restarted
  // run finds them when `resumable` (else to state_dir / "scratch", cleared
  // first); without one everything stays in memory.
  CalibrationEngine(model::LlamaModel& model, const at::Tensor& ids, int64_t batch, std::filesystem::path state_dir,
                    const std::string& fingerprint, bool resumable = true);

  // The first block still to do (0 without saved state). Puts the saved
  // blocks' outputs (weights, integer and W8A8 forms, errors) into `out`
  // as views of their files, and their weights into the model where its
  // layers are resident.
  int64_t resume(QuantOutput& out);

  // Inputs of the current block: mini-batches [b, T, hidden].
  const std::vector<at::Tensor>& inputs() const { return inputs_; }
  // Block `layer` applied to the current inputs with its current weights.
  std::vector<at::Tensor> forward(int64_t layer, const model::LinearHook* hook = nullptr) const;
  // Every input of the named Linears of block `layer`, float32 [tokens, in].
  // A routed expert's Linears see the tokens routed to it; an expert with
  // fewer than min_expert_tokens() of them is calibrated on every token of
  // the block instead (llm-compressor's calibrate-all-experts): its gate/up
  // get the MLP's full input, its down act(gate(x)) * up(x) of it.
  std::map<std::string, at::Tensor> capture_inputs(int64_t layer, const std::vector<std::string>& names) const;
  // Tokens routed to each expert of sparse block `layer` (top-k picks), empty
  // for a dense block.
  std::vector<int64_t> expert_tokens(int64_t layer) const;
  // Fewer routed tokens than the hidden size leave an expert's Hessian
  // X^T X [hidden, hidden] rank-deficient: such an expert takes the fallback.
  int64_t min_expert_tokens() const { return model_.config().hidden; }

  // Block `layer` is done: its outputs in `out` (the model's block tensors
  // in the stored dtype, integer and W8A8 forms, under "model.layers.N.")
  // are written to its block file, when there is a folder, and replaced in
  // `out` by views of that file; `next_inputs` become the inputs.
  void advance(int64_t layer, std::vector<at::Tensor> next_inputs, const std::vector<LayerError>& layer_errors,
               QuantOutput& out);

  model::LlamaModel& model() { return model_; }

 private:
  model::LlamaModel& model_;
  std::vector<at::Tensor> inputs_;
  std::filesystem::path dir_;  // where block files go, or empty
  bool resumable_ = true;
};

// One block's work inside run_blocks(): the algorithm quantizes `layer`
// (onloaded on the job's device) from `engine`'s inputs, puts its integer or
// W8A8 forms into `out` under the block's names and its errors in `errors`.
struct BlockStep {
  int64_t index = 0;
  std::string prefix;  // "model.layers.3."
  model::DecoderLayer& layer;
  CalibrationEngine& engine;
  QuantOutput& out;
  std::vector<LayerError> errors;
  // The next block's inputs: the algorithm sets them when they must be the
  // full-precision outputs (taken before it changed the block); left empty,
  // they are the quantized block's outputs.
  std::optional<std::vector<at::Tensor>> next;
};

struct BlockLoopOptions {
  int64_t batch = 8;      // calibration windows per forward
  bool resumable = true;  // blocks saved for a restarted run
  // Called for every block restored from saved state instead of run.
  std::function<void(int64_t layer)> on_resumed;
};

// The calibration loop every calibrating algorithm plugs into: embeds the
// windows, resumes after the saved blocks, then for every block onloads it,
// runs `step`, takes the next inputs, collects the block's tensors, saves
// (spills) them, offloads the block and reports progress. `model` is
// streamed or resident, as loaded.
void run_blocks(const QuantInputs& in, model::LlamaModel& model, const at::Tensor& ids, QuantOutput& out,
                const BlockLoopOptions& options, const std::function<void(BlockStep&)>& step);

// Writes the outputs of `out` under `prefix` (replaced, int_weights,
// w8a8_weights) to `file` and replaces them with views of it: what keeps the
// output of a whole model out of memory. Metadata goes into the header.
void spill_outputs(QuantOutput& out, const std::string& prefix, const std::filesystem::path& file,
                   std::map<std::string, std::string> metadata = {});

// Removes from out.replaced the float weights under `prefix` of Linears
// that have an integer or W8A8 form (QuantInputs::keep_float_weights).
void drop_float_copies(QuantOutput& out, const std::string& prefix);
// Drops the integer codes under `prefix` of Linears that keep a float copy
// (QuantInputs::keep_int_codes false).
void drop_int_codes(QuantOutput& out, const std::string& prefix);

// Checkpoint tensor `name` has been written to the output and nothing
// reads its data again: its replacement and the data of its integer, W8A8
// or FP4 form leave `out` (scales and metadata stay, copied out of any
// spill file, for the report). Once every tensor of a spilled block is
// released, the block file's mapping goes, and with it, when the file was
// unlinked, its disk space: what keeps packaging from holding the whole
// calibration state beside the whole output.
void release_written(QuantOutput& out, const std::string& name);

// For algorithms that go tensor by tensor (RTN, HQQ): each decoder
// tensor's outputs are spilled as soon as it is done, to
// state_dir / "scratch" / NAME.safetensors. Without a state folder, nothing
// moves.
class LayerSpill {
 public:
  // keep_int_codes: QuantInputs::keep_int_codes.
  LayerSpill(const std::filesystem::path& state_dir, QuantOutput& out, bool keep_int_codes = true);
  // `name` was just handled and `next` comes after it ("" at the end).
  void after(const std::string& name, const std::string& next);

 private:
  std::filesystem::path dir_;
  QuantOutput& out_;
  bool keep_int_codes_ = true;
};

// sha256 over config.json, the weight files' names and sizes, `params` and
// the calibration ids: what a saved block state depends on.
// The compute dtype too: a run resumed on another device must not mix its blocks.
std::string calibration_fingerprint(const model::Checkpoint& ckpt, const nlohmann::json& params, const at::Tensor& ids,
                                    at::ScalarType compute = at::kFloat);

// Relative output error of W' against W on inputs x [tokens, in].
double relative_output_error(const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_q);

// The errors of Linear `name` quantized from w to w_q whose inputs go
// through `act`: weight errors, and the output error on x (against the float
// Linear on the float inputs) when x is defined.
LayerError linear_error(const std::string& name, const at::Tensor& w, const at::Tensor& w_q, const at::Tensor& x,
                        const model::ActQuant& act);

// The model tensors of block `layer` by checkpoint name, converted to the
// stored dtype: what a calibrating algorithm replaces in the checkpoint.
void collect_block(const model::Checkpoint& ckpt, model::LlamaModel& m, int64_t layer,
                   std::map<std::string, at::Tensor>& replaced);

// The model's tensors outside the blocks after a transform changed them
// (QoQ's and QuaRot's rotations): the embedding and the final norm, and
// lm_head unless the model is still tied, converted to the stored dtypes.
// A checkpoint that tied lm_head gets it in out.added, with
// tie_word_embeddings false in out.config_patch.
void collect_outside(const model::Checkpoint& ckpt, model::LlamaModel& m, QuantOutput& out);

}  // namespace qjobs::quant
