#include "jobs/quant/smoothquant_params.hpp"

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

const ParamTable<SmoothQuantParams>& smoothquant_params() {
  static const auto t =
      ParamTable<SmoothQuantParams>()
          .add(&SmoothQuantParams::alpha, param::number("alpha", "migration strength", nullptr, 0, 1))
          .add(&SmoothQuantParams::act,
               param::string("ACT", "integer activation scales: dynamic (per token) or static (per tensor, calibrated)",
                             nullptr, {"dynamic", "static"}))
          .add(&SmoothQuantParams::a_bit,
               param::integer("A_BIT", "input activation bits (8; 16 for 16-bit activations)", nullptr, 2, 16))
          .add(&SmoothQuantParams::smoothing,
               param::boolean(
                   "SMOOTHING",
                   "migrate activation outliers into the weights (false: plain W8A8, as Quark's int8 recipe)", nullptr))
          .add(&SmoothQuantParams::weight_scale,
               param::string("WEIGHT_SCALE", "int8 weight scales per output channel or one per tensor (Quark)", nullptr,
                             {"channel", "tensor"}))
          .add(&SmoothQuantParams::layer_overrides, layer_overrides_spec(true));
  return t;
}

AlgorithmInfo smoothquant_info() {
  AlgorithmInfo a{
      "SmoothQuant", "W8A8 with activation smoothing (int8 weights and activations; compressed-tensors int-quantized)",
      true,          smoothquant_params().specs(),
      512,           512};
  // W8A8 per output channel: of the plan only SKIP and A_BIT apply.
  a.weights = [](const nlohmann::json& s) {
    const SmoothQuantParams p = smoothquant_params().parse(s);
    WeightScheme w;
    w.a_bits = static_cast<int>(p.a_bit);
    w.overrides = linear_overrides(p.layer_overrides);
    return w;
  };
  a.output = [](const nlohmann::json&) { return AlgorithmOutput{}; };
  return a;
}

}  // namespace qjobs::quant
