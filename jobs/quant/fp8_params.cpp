#include "jobs/quant/fp8_params.hpp"

namespace qjobs::quant {

const ParamTable<Fp8Params>& fp8_params() {
  static const auto t =
      ParamTable<Fp8Params>()
          .add(&Fp8Params::kv_cache, param::boolean("kv_cache", "quantize the KV cache to FP8", nullptr))
          .add(&Fp8Params::act,
               param::string("ACT", "activation scales: dynamic (per token) or static (per tensor, calibrated)",
                             nullptr, {"dynamic", "static"}))
          .add(&Fp8Params::weight_scale, param::string("WEIGHT_SCALE", "weight scales per output channel or per tensor",
                                                       nullptr, {"channel", "tensor"}));
  return t;
}

AlgorithmInfo fp8_info() {
  AlgorithmInfo a{"FP8", "W8A8 E4M3 with optional FP8 KV cache; compressed-tensors float-quantized",
                  true,  fp8_params().specs(),
                  512,   512};
  a.weights = [](const nlohmann::json&) { return WeightScheme{}; };  // every Linear, E4M3 per channel or tensor
  a.output = [](const nlohmann::json&) { return AlgorithmOutput{.w_format = "fp8"}; };
  // Dynamic scales without an FP8 KV cache need no calibration.
  a.needs_data = [](const nlohmann::json& s) {
    const Fp8Params p = fp8_params().parse(s);
    return p.act != "dynamic" || p.kv_cache;
  };
  return a;
}

}  // namespace qjobs::quant
