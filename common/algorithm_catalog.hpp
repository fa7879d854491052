// The algorithms a job may name, with the schema of their `llm: {<NAME>: ...}`
// section. This table is what the server validates against (it never links
// the implementations); jobs/quant registers one implementation per
// available row, and a test checks the two agree.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

enum class ParamType { boolean, integer, number, string, string_list, section, section_list };

std::string_view param_type_name(ParamType t);

// One key of an algorithm section. Sections nest; Nyuntam's dotted keys
// (`quant.smooth.xw.alpha`) address the nested ones.
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  std::string description;
  nlohmann::json default_value;       // null: no default, the key stays absent
  double min = -1e300;                // integer/number: inclusive bounds
  double max = 1e300;
  std::vector<std::string> choices;   // string: allowed values when non-empty
  std::vector<ParamSpec> children;    // section, section_list: the keys of the (each) mapping
  // Extra rule on a value that already has the right type; returns the
  // message when the value is rejected.
  std::function<std::optional<std::string>(const nlohmann::json&)> check;
};

struct AlgorithmInfo {
  std::string name;         // as ALGORITHM spells it
  std::string description;
  bool available = false;   // false: known, accepted by the schema, not built yet
  std::vector<ParamSpec> params;
  // Calibration defaults as the algorithm's paper used them; 0 = calibration-free.
  int64_t calib_samples = 0;
  int64_t calib_seqlen = 0;
};

const std::vector<AlgorithmInfo>& algorithm_catalog();

// The top-level `calibration:` section: {data_path | dataset, subset, split,
// text_column, n_samples, seqlen, seed}. Absent keys fall back to the spec's
// DATA_PATH / DATASET_NAME / ... and the algorithm's defaults.
const std::vector<ParamSpec>& calibration_schema();

// The top-level `eval:` section: {tasks: [{type: ppl|wikitext-ppl|demo, ...}]}.
const std::vector<ParamSpec>& eval_schema();

// Exact, case-sensitive lookup; nullptr when the name is unknown.
const AlgorithmInfo* find_algorithm(std::string_view name);

}  // namespace qjobs
