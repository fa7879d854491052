#include "jobs/quant/awq_params.hpp"

namespace qjobs::quant {

const ParamTable<AwqParams>& awq_params() {
  static const auto t =
      weight_only_table<AwqParams>()
          .add(&AwqParams::n_grid, param::integer("N_GRID", "grid points of the scale search", nullptr, 2, 1000))
          .add(&AwqParams::duo_scaling,
               param::boolean("DUO_SCALING", "scale by activation and weight statistics (AutoAWQ's default)", nullptr))
          .add(&AwqParams::clip, param::boolean("CLIP", "search clipping ranges after scaling", nullptr));
  return t;
}

AlgorithmInfo awq_info() {
  AlgorithmInfo a{"AutoAWQ", "AWQ activation-aware weight quantization", true, awq_params().specs(), 128, 512};
  a.weights = [](const nlohmann::json& s) { return awq_params().parse(s).weight_scheme(); };
  a.output = [](const nlohmann::json&) {
    return AlgorithmOutput{.int_weight_only = true, .int_weights = true, .onnx_encodings = true};
  };
  a.check = weight_only_check;
  return a;
}

}  // namespace qjobs::quant
