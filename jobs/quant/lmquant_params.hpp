// LMQuant's parameters: Nyuntam's LMQuant section, deepcompressor's quant.*
// keys nested under `quant` (read into a QoqConfig by jobs/quant/qoq.cpp,
// where an unset key keeps the preset's value).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "common/param_table.hpp"
#include "jobs/quant/smoothquant_params.hpp"

namespace qjobs::quant {

struct LmQuantParams {
  bool save_model = true;           // save_model: package the quantized checkpoint
  bool keep_scales = true;          // keep_scales: keep the scales in the checkpoint
  bool loads_with_qserve = false;   // loads_with_qserve: pack for the QServe runtime
  std::string dtype = "float16";    // dtype: compute dtype of calibration
  std::string quant_type = "gchn";  // quant_type: g128, gchn (QoQ), sq_dynamic, sq_static, awq, gptq
  nlohmann::json quant;             // quant: deepcompressor's settings as written; unset keys keep the preset
  nlohmann::json layer_overrides = nlohmann::json::array();  // LAYER_OVERRIDES as written
  nlohmann::json eval;                                       // eval: LMQuant's evaluation section as written
};

const ParamTable<LmQuantParams>& lmquant_params();
AlgorithmInfo lmquant_info();

constexpr double kQoqProtectiveRange = 119;  // QServe's int8 range before the 4-bit step

struct SmoothSetting {
  bool enabled = true;
  std::string strategy = "GridSearch";  // or Manual
  double alpha = 0.5;
  double beta = -1;  // < 0: 1 - alpha
  int num_grids = 20;
};

struct QoqConfig {
  std::string preset = "g128";
  int w_bits = 4;
  int64_t w_group = 128;    // -1: per output channel
  bool progressive = true;  // int8 per channel, then integer group scales
  bool calib_range = true;
  double max_shrink = 0.2;
  int clip_grids = 20;
  bool gptq = true;
  double damp = 0.01;
  int64_t gptq_block = 128;
  int a_bits = 8;  // 0: activations kept in full precision
  bool a_static = false;
  int kv_bits = 4;       // 0: KV cache kept in full precision
  int64_t kv_group = 0;  // channels per KV group; 0 = the whole head
  bool rotation = true;
  bool rotation_random = false;
  SmoothSetting xw;                              // v -> o, up -> down
  SmoothSetting yx{true, "Manual", 0.5, 0, 20};  // SmoothAttention
  bool reorder = true;

  // The preset's values, then the LMQuant section's quant.* keys (already
  // validated against the catalog). Throws Error(invalid_input) naming a
  // key whose value the algorithm cannot use.
  static QoqConfig from_lmquant(const nlohmann::json& section);
  nlohmann::json to_json() const;
};

// SmoothQuant's parameters for the sq_dynamic / sq_static presets: alpha
// from quant.smooth.xw.alpha, smoothing off with quant.enable_smooth: false,
// the section's overrides; SmoothQuant's defaults otherwise.
SmoothQuantParams lmquant_smoothquant(const LmQuantParams& p);

// The per-Linear weight settings of an LMQuant section: QoQ's for g128 and
// gchn, AWQ's and GPTQ's defaults (W4 g128) for their presets, W8A8 (only
// SKIP and A_BIT apply) for sq_*. Throws Error(invalid_input) as from_lmquant.
WeightScheme lmquant_weights(const nlohmann::json& section);

// The value at a dotted path below `j` (deepcompressor's nested quant.*
// keys), or nullptr.
const nlohmann::json* at_path(const nlohmann::json& j, std::initializer_list<const char*> path);

}  // namespace qjobs::quant
