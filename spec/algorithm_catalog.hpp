// The algorithms a job may name, with the schema of their `llm: {<NAME>: ...}`
// section. This table is what the server validates against (it never links
// the implementations). Its rows are built from each algorithm's parameter
// declarations (jobs/quant/NAME_params.cpp, listed in
// jobs/quant/algorithm_list.hpp) by jobs/quant/catalog.cpp, in the library
// qjobs_algorithm_params, which does not link libtorch; jobs/quant registers
// one implementation per row from the same list.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <functional>

#include <nlohmann/json.hpp>

#include "common/param_spec.hpp"
#include "jobs/quant/weight_scheme.hpp"

namespace qjobs {

// What an algorithm's section produces, as the export formats' rules ask it
// (spec/export_formats.hpp): stated by the algorithm's own row.
struct AlgorithmOutput {
  bool quantizes = true;         // false: Evaluate
  bool int_weight_only = false;  // integer weights and nothing else: what awq, gptq and GGUF hold
  std::string w_format = "int";  // the weights' number format: int, nvfp4 or mxfp4 (W_FORMAT)
  bool int_weights = false;      // integer weights (with or without activation quantization)
  bool onnx_encodings = false;   // integer weights with at most static per-tensor integer inputs
  std::string fp4 = "";          // "NVFP4" or "MXFP4" for the FP4 algorithms
};

// A rule of an algorithm's own section, found on its row: `keys` is the path
// inside the section ({"LPBQ"}, {"loads_with_qserve"}); empty: ALGORITHM.
struct SectionFinding {
  std::vector<std::string> keys;
  bool error = true;  // false: a warning the job carries
  std::string message;
};

// One decoder block's widths and the calibration windows, for an
// algorithm's cost (AlgorithmInfo::block_work) in the estimate made before
// a job starts (spec/estimate.hpp). MLP widths count what one token passes
// through: a dense MLP's intermediate, or its top_k experts' and the shared
// expert's.
// One quantized Linear of a block, as the estimate counts it.
struct BlockLinear {
  int64_t in = 0, out = 0;
  // The Linears that read one input share it (GPTQ's Hessian, one
  // capture): the name of its first reader, as DecoderLayer::input_sources.
  std::string input;
  int group = 0;              // GPTQ's sequential group: q/k/v 0, o 1, gate/up 2, down 3
  bool feeds_scores = false;  // q, k or fused qkv: AWQ leaves their range alone
  bool output_proj = false;   // o or a down projection: the end of a scale group
  double token_share = 1;     // the share of the block's tokens it sees (a routed expert: top_k / experts)
  double weights() const { return static_cast<double>(in) * static_cast<double>(out); }
};

// A decoder block's shapes as an algorithm's cost count sees them: its
// Linears one by one (fused, expert and shared ones as the family's table
// has them) and its attention.
struct BlockShape {
  int64_t samples = 0, seqlen = 0;  // calibration windows
  int64_t hidden = 0, q_width = 0, kv_width = 0, heads = 0, head_dim = 0;
  int64_t mlp_width = 0;  // the intermediate width one token passes through
  int64_t params = 0;     // every Linear weight of the block (all experts)
  std::vector<BlockLinear> linears;

  int64_t tokens() const { return samples * seqlen; }
  // Weights one token multiplies with: each Linear by the share of tokens it sees.
  double active_params() const;
  // FLOPs of one forward on the windows: the Linears, the attention scores
  // and their mix over whole windows (what qjobs' attention computes).
  double linear_flops() const { return 2.0 * static_cast<double>(tokens()) * active_params(); }
  double attention_flops() const;
  double forward_flops() const { return linear_flops() + attention_flops(); }
};

// The work of calibrating one block: FLOPs in matrix products, FLOPs in
// factorizations (Cholesky, triangular inverses: slower per FLOP), float32
// elementwise passes (one read and one write of an element), and the bytes
// the algorithm holds beyond the block's weights and the activations of one
// forward.
struct BlockWork {
  double gemm_flops = 0;
  double factor_flops = 0;
  double elementwise = 0;
  double working_bytes = 0;
};

struct AlgorithmInfo {
  std::string name;  // as ALGORITHM spells it
  std::string description;
  bool available = false;  // false: known, accepted by the schema, not built yet
  std::vector<ParamSpec> params;
  // Calibration defaults as the algorithm's paper used them; 0 = calibration-free.
  int64_t calib_samples = 0;
  int64_t calib_seqlen = 0;
  // The section (validated, defaults applied) as the per-Linear weight
  // settings; null for Evaluate. Throws Error(invalid_input) naming a key
  // whose value the algorithm cannot use.
  std::function<quant::WeightScheme(const nlohmann::json& section)> weights = nullptr;
  // What the section produces (default: weight-only integers).
  std::function<AlgorithmOutput(const nlohmann::json& section)> output = nullptr;
  // The section's own rules beyond its schema, given the export format;
  // null when it has none.
  std::function<std::vector<SectionFinding>(const nlohmann::json& section, const std::string& export_format)> check =
      nullptr;
  // True when the algorithm calibrates on text with this section (default:
  // calib_samples > 0).
  std::function<bool(const nlohmann::json& section)> needs_data = nullptr;
  // What calibrating one block costs with this section, counted from what
  // the algorithm's run() computes; null: the estimate's generic count
  // (spec/estimate.cpp) and a note that says so.
  std::function<BlockWork(const nlohmann::json& section, const BlockShape& block)> block_work = nullptr;
};

// Defined in jobs/quant/catalog.cpp (qjobs_algorithm_params).
const std::vector<AlgorithmInfo>& algorithm_catalog();

// The top-level `calibration:` section: {data_path | dataset, subset, split,
// text_column, n_samples, seqlen, seed}. Absent keys fall back to the spec's
// DATA_PATH / DATASET_NAME / ... and the algorithm's defaults.
const std::vector<ParamSpec>& calibration_schema();

// Whether `algo` calibrates on text with `section` (its needs_data, else
// calib_samples > 0).
bool algorithm_needs_data(const AlgorithmInfo& algo, const nlohmann::json& section);

// Exact, case-sensitive lookup; nullptr when the name is unknown.
const AlgorithmInfo* find_algorithm(std::string_view name);

}  // namespace qjobs
