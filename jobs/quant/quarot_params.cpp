#include "jobs/quant/quarot_params.hpp"

namespace qjobs::quant {

const ParamTable<QuarotParams>& quarot_params() {
  static const auto t =
      weight_only_table<QuarotParams>()
          .add(&QuarotParams::rotation,
               param::string("ROTATION",
                             "the orthogonal matrix of the residual stream and of each value head: the normalized "
                             "Hadamard matrix, or with random column signs (QuaRot's); a width that is not a power "
                             "of two gets a random orthogonal matrix",
                             nullptr, {"hadamard", "random_hadamard"}))
          .add(&QuarotParams::seed, param::integer("SEED", "seed of the random signs and of a random orthogonal matrix",
                                                   nullptr, 1, 2147483647))
          .add(&QuarotParams::quantizer,
               param::string("QUANTIZER",
                             "what quantizes the rotated weights: RTN (round to nearest, no calibration) or GPTQ "
                             "(calibrates on the rotated model's inputs)",
                             nullptr, {"RTN", "GPTQ"}))
          .add(&QuarotParams::damp_percent,
               param::number("DAMP_PERCENT", "GPTQ's damping as a share of the mean Hessian diagonal", nullptr, 0, 1));
  return t;
}

AlgorithmInfo quarot_info() {
  AlgorithmInfo a{"QuaRot",
                  "Hadamard rotation of the residual stream and value heads, fused into the weights, then RTN or "
                  "GPTQ; the checkpoint stays a plain model of its family",
                  true,
                  quarot_params().specs(),
                  128,
                  2048};
  a.weights = [](const nlohmann::json& s) { return quarot_params().parse(s).weight_scheme(); };
  a.output = [](const nlohmann::json&) {
    return AlgorithmOutput{.int_weight_only = true, .int_weights = true, .onnx_encodings = true};
  };
  a.check = weight_only_check;
  a.needs_data = [](const nlohmann::json& s) { return quarot_params().parse(s).quantizer == "GPTQ"; };
  return a;
}

}  // namespace qjobs::quant
