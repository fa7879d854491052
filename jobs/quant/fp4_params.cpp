#include "jobs/quant/fp4_params.hpp"

#include <string>

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {
namespace {

ParamTable<Fp4Params> make_table(const char* block) {
  return ParamTable<Fp4Params>()
      .add(&Fp4Params::act, param::string("ACT",
                                          std::string("activations: none (W4A16) or dynamic (W4A4, FP4 blocks of ") +
                                              block + " at run time)",
                                          nullptr, {"none", "dynamic"}))
      .add(&Fp4Params::layer_overrides, skip_overrides_spec());
}

}  // namespace

const ParamTable<Fp4Params>& fp4_params(const char* block) {
  static const auto nv = make_table("16");
  static const auto mx = make_table("32");
  return std::string(block) == "32" ? mx : nv;
}

namespace {
// FP4 blocks for every Linear but those the overrides SKIP.
WeightScheme fp4_weights(const Fp4Params& p) {
  WeightScheme w;
  w.overrides = linear_overrides(p.layer_overrides);
  return w;
}
}  // namespace

AlgorithmInfo nvfp4_info() {
  AlgorithmInfo a{
      "NVFP4",
      "FP4 E2M1 weights in blocks of 16 with FP8 E4M3 block scales and a float32 global scale (W4A16, or W4A4 "
      "with a calibrated input global scale); compressed-tensors nvfp4-pack-quantized",
      true,
      fp4_params("16").specs(),
      128,
      512};
  a.weights = [](const nlohmann::json& s) { return fp4_weights(fp4_params("16").parse(s)); };
  a.output = [](const nlohmann::json&) { return AlgorithmOutput{.w_format = "nvfp4", .fp4 = "NVFP4"}; };
  // Weight-only NVFP4 needs no calibration; W4A4 calibrates its input global scales.
  a.needs_data = [](const nlohmann::json& s) { return fp4_params("16").parse(s).act != "none"; };
  return a;
}

AlgorithmInfo mxfp4_info() {
  AlgorithmInfo a{"MXFP4",
                  "FP4 E2M1 weights in blocks of 32 with E8M0 power-of-two scales (W4A16 or W4A4); compressed-tensors "
                  "mxfp4-pack-quantized",
                  true, fp4_params("32").specs()};
  a.weights = [](const nlohmann::json& s) { return fp4_weights(fp4_params("32").parse(s)); };
  a.output = [](const nlohmann::json&) { return AlgorithmOutput{.w_format = "mxfp4", .fp4 = "MXFP4"}; };
  return a;
}

}  // namespace qjobs::quant
