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

#include "common/param_spec.hpp"

namespace qjobs {

struct AlgorithmInfo {
  std::string name;         // as ALGORITHM spells it
  std::string description;
  bool available = false;   // false: known, accepted by the schema, not built yet
  std::vector<ParamSpec> params;
  // Calibration defaults as the algorithm's paper used them; 0 = calibration-free.
  int64_t calib_samples = 0;
  int64_t calib_seqlen = 0;
};

// Defined in jobs/quant/catalog.cpp (qjobs_algorithm_params).
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
