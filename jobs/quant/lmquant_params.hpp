// LMQuant's parameters: Nyuntam's LMQuant section, deepcompressor's quant.*
// keys nested under `quant` (read into a QoqConfig by jobs/quant/qoq.cpp,
// where an unset key keeps the preset's value).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/algorithm_catalog.hpp"
#include "common/param_table.hpp"

namespace qjobs::quant {

struct LmQuantParams {
  bool save_model = true;              // save_model: package the quantized checkpoint
  bool keep_scales = true;             // keep_scales: keep the scales in the checkpoint
  bool loads_with_qserve = false;      // loads_with_qserve: pack for the QServe runtime
  std::string dtype = "float16";       // dtype: compute dtype of calibration
  std::string quant_type = "gchn";     // quant_type: g128, gchn (QoQ), sq_dynamic, sq_static, awq, gptq
  nlohmann::json quant;                // quant: deepcompressor's settings as written; unset keys keep the preset
  nlohmann::json layer_overrides = nlohmann::json::array();      // LAYER_OVERRIDES as written
  nlohmann::json eval;                 // eval: LMQuant's evaluation section as written
};

const ParamTable<LmQuantParams>& lmquant_params();
AlgorithmInfo lmquant_info();

}  // namespace qjobs::quant
