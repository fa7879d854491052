#include "jobs/quant/seq_mse_params.hpp"

namespace qjobs::quant {

const ParamTable<SeqMseParams>& seq_mse_params() {
  static const auto t = [] {
    auto a = param::integer(
        "A_BIT", "simulated input activation bits, static per tensor (16: w4a16, 8: w4a8; 0: none, weight-only)",
        nullptr, 0, 16);
    a.check = [](const nlohmann::json& v) -> std::optional<std::string> {
      const auto b = v.get<long long>();
      if (b == 0 || b >= 2) return std::nullopt;
      return "must be 0 (no activation quantization) or 2..16 bits";
    };
    return weight_only_table<SeqMseParams>(true)
        .add(&SeqMseParams::num_candidates,
             param::integer("NUM_CANDIDATES",
                            "range candidates per channel (group): (c + 1) / N of the full range, c = 0 .. N-1",
                            nullptr, 1, 1000))
        .add(&SeqMseParams::num_batches,
             param::integer("NUM_BATCHES",
                            "calibration windows the search uses (AIMET's num_batches); unset: all of them", nullptr, 1,
                            1 << 20))
        .add(&SeqMseParams::inp_symmetry,
             param::string("INP_SYMMETRY",
                           "inputs of both outputs: symqt (of the quantized model) or symfp (of the float model)",
                           nullptr, {"symqt", "symfp"}))
        .add(&SeqMseParams::loss_fn,
             param::string("LOSS_FN", "output error minimized per channel (group): mse, l1 or sqnr", nullptr,
                           {"mse", "l1", "sqnr"}))
        .add(&SeqMseParams::a_bit, std::move(a))
        .add(&SeqMseParams::lpbq,
             param::boolean("LPBQ",
                            "AIMET's low-power blockwise quantization: each row's block scales as integer multiples "
                            "1..2^(8 - W_BIT) of one per-channel scale (symmetric, Q_GROUP_SIZE blocks; 8-bit Linears "
                            "keep plain blocks)",
                            nullptr));
  }();
  return t;
}

AlgorithmInfo seq_mse_info() {
  AlgorithmInfo a{
      "SequentialMSE",
      "AIMET's Sequential MSE: per channel (group) the weight range minimizing each Linear's output error on "
      "inputs that carry the earlier Linears' quantization; W4/W8, w4a16 / w8a16 with LAYER_OVERRIDES",
      true,
      seq_mse_params().specs(),
      32,
      2048};
  a.weights = [](const nlohmann::json& s) {
    const SeqMseParams p = seq_mse_params().parse(s);
    WeightScheme w = p.weight_scheme();
    w.a_bits = static_cast<int>(p.a_bit);  // weight-only unless asked
    return w;
  };
  a.output = [](const nlohmann::json& s) {
    const SeqMseParams p = seq_mse_params().parse(s);
    bool acts = p.a_bit != 0;
    for (const auto& o : linear_overrides(p.layer_overrides)) acts = acts || o.a_bits.value_or(0) != 0;
    return AlgorithmOutput{.int_weight_only = !acts, .int_weights = true, .onnx_encodings = true};
  };
  a.check = [](const nlohmann::json& s, const std::string& format) {
    auto out = weight_only_check(s, format);
    const SeqMseParams p = seq_mse_params().parse(s);
    if (p.lpbq && p.zero_point) out.push_back({{"LPBQ"}, true, "LPBQ is symmetric: set ZERO_POINT: false"});
    return out;
  };
  return a;
}

}  // namespace qjobs::quant
