#include "jobs/quant/hqq_params.hpp"

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

const ParamTable<HqqParams>& hqq_params() {
  static const auto t =
      ParamTable<HqqParams>()
          .add(&HqqParams::w_bit, param::integer("W_BIT", "weight bits", nullptr, 2, 8))
          .add(&HqqParams::group_size, group_size_spec("input columns per group; -1 = per output channel"))
          .add(&HqqParams::zero_points,
               param::string("ZERO_POINTS",
                             "real (HQQ's own) or integer (rounded as the last step, what packed formats store); "
                             "unset: integer for a packed export, real for fake_quant",
                             nullptr, {"real", "integer"}))
          .add(&HqqParams::layer_overrides, layer_overrides_spec(false));
  return t;
}

AlgorithmInfo hqq_info() {
  AlgorithmInfo a{"HQQ", "half-quadratic calibration-free weight quantization", true, hqq_params().specs()};
  a.weights = [](const nlohmann::json& s) {
    const HqqParams p = hqq_params().parse(s);
    WeightScheme w;
    w.bits = static_cast<int>(p.w_bit);
    w.group_size = p.group_size;
    w.overrides = linear_overrides(p.layer_overrides);
    return w;
  };
  // Integer weights, but with real-valued zero points by default: no ONNX encodings.
  a.output = [](const nlohmann::json&) { return AlgorithmOutput{.int_weight_only = true, .int_weights = true}; };
  // Counted from hqq_quantize (hqq.cpp), per weight: up to 20 iterations of
  // the half-quadratic solver, each about 20 elementwise passes (round to
  // the grid, dequantize, the error, its l_p soft threshold, the zero's
  // update and the mean error) plus the power e^(p-1), counted as 10 more
  // (a logarithm and an exponential); then about 14 passes for the final
  // codes and weight. No products, no calibration.
  a.block_work = [](const nlohmann::json&, const BlockShape& b) {
    BlockWork w;
    w.elementwise = (20 * (20 + 10) + 14) * static_cast<double>(b.params);
    return w;
  };
  a.check = [](const nlohmann::json& s, const std::string& format) {
    std::vector<SectionFinding> out;
    if (format != "fake_quant" && hqq_params().parse(s).zero_points.value_or("") == "real")
      out.push_back(
          {{"ZERO_POINTS"},
           true,
           "HQQ's real-valued zero points have no packed form (every packed format stores integer zero points): "
           "leave ZERO_POINTS unset or integer, or set EXPORT_FORMAT: fake_quant"});
    return out;
  };
  return a;
}

}  // namespace qjobs::quant
