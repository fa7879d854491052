#include "jobs/quant/rtn_params.hpp"

namespace qjobs::quant {

const ParamTable<RtnParams>& rtn_params() {
  static const auto t = weight_only_table<RtnParams>();
  return t;
}

AlgorithmInfo rtn_info() {
  AlgorithmInfo a{"RTN", "round-to-nearest weight quantization (no calibration)", true, rtn_params().specs()};
  a.weights = [](const nlohmann::json& s) { return rtn_params().parse(s).weight_scheme(); };
  a.output = [](const nlohmann::json&) {
    return AlgorithmOutput{.int_weight_only = true, .int_weights = true, .onnx_encodings = true};
  };
  a.check = weight_only_check;
  return a;
}

}  // namespace qjobs::quant
