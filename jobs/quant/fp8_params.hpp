// FP8's parameters (W8A8 E4M3, optional FP8 KV cache).
#pragma once

#include <string>

#include "spec/algorithm_catalog.hpp"
#include "common/param_table.hpp"

namespace qjobs::quant {

struct Fp8Params {
  bool kv_cache = false;                 // kv_cache: quantize the KV cache to FP8
  std::string act = "dynamic";           // ACT: dynamic (per token) or static (per tensor, calibrated)
  std::string weight_scale = "channel";  // WEIGHT_SCALE: channel or tensor
};

const ParamTable<Fp8Params>& fp8_params();
AlgorithmInfo fp8_info();

}  // namespace qjobs::quant
