#include "jobs/quant/fp4_params.hpp"

#include <string>

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {
namespace {

ParamTable<Fp4Params> make_table(const char* block) {
  return ParamTable<Fp4Params>()
      .add(&Fp4Params::act,
           param::string("ACT", std::string("activations: none (W4A16) or dynamic (W4A4, FP4 blocks of ") + block + " at run time)",
                         nullptr, {"none", "dynamic"}))
      .add(&Fp4Params::layer_overrides, skip_overrides_spec());
}

}  // namespace

const ParamTable<Fp4Params>& fp4_params(const char* block) {
  static const auto nv = make_table("16");
  static const auto mx = make_table("32");
  return std::string(block) == "32" ? mx : nv;
}

AlgorithmInfo nvfp4_info() {
  return {"NVFP4",
          "FP4 E2M1 weights in blocks of 16 with FP8 E4M3 block scales and a float32 global scale (W4A16, or W4A4 "
          "with a calibrated input global scale); compressed-tensors nvfp4-pack-quantized",
          true, fp4_params("16").specs(), 128, 512};
}

AlgorithmInfo mxfp4_info() {
  return {"MXFP4",
          "FP4 E2M1 weights in blocks of 32 with E8M0 power-of-two scales (W4A16 or W4A4); compressed-tensors "
          "mxfp4-pack-quantized",
          true, fp4_params("32").specs()};
}

}  // namespace qjobs::quant
