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
