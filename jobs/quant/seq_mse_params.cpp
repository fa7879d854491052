#include "jobs/quant/seq_mse_params.hpp"

#include <algorithm>
#include <cmath>
#include <set>

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
  // Counted from seq_mse_quantize and its block loop (seq_mse.cpp): the
  // inputs captured once per sequential group (symqt; symfp: one forward
  // and one capture) and the block's output; per Linear and group of g
  // columns, each candidate's rounding of the group (about 14 passes a
  // weight) and its loss. mse (the default): the group's Gram matrix once
  // (2 T g^2) and per candidate d H d^T (2 out g^2, 3 passes a weight);
  // l1 and sqnr: the group's float output and one product per candidate
  // (2 T g out each) and the loss over the outputs (about 3 passes an
  // output). Then the output errors.
  a.block_work = [](const nlohmann::json& section, const BlockShape& b) {
    const SeqMseParams p = seq_mse_params().parse(section);
    const double windows = p.num_batches
                               ? std::min<double>(static_cast<double>(*p.num_batches), static_cast<double>(b.samples))
                               : static_cast<double>(b.samples);
    const double T = static_cast<double>(b.tokens()), Ts = windows * static_cast<double>(b.seqlen);
    const double C = static_cast<double>(p.num_candidates);
    const bool quadratic = p.loss_fn == "mse";
    std::set<int> groups;
    double search = 0, passes = 0, widest_in = 0;
    for (const auto& l : b.linears) {
      groups.insert(l.group);
      const double in = static_cast<double>(l.in), out = static_cast<double>(l.out);
      const double g = p.group_size > 0 ? std::min<double>(static_cast<double>(p.group_size), in) : in;
      const double column_groups = std::ceil(in / g);
      const double ts = Ts * l.token_share;
      if (quadratic) {
        search += 2 * ts * in * g + C * 2 * out * in * g;
        passes += C * 17 * in * out;
      } else {
        search += (C + 1) * 2 * ts * in * out;
        passes += C * (14 * in * out + column_groups * 3 * ts * out);
      }
      widest_in = std::max(widest_in, in);
    }
    const double captures = p.inp_symmetry == "symfp" ? 1 : static_cast<double>(groups.size());
    BlockWork w;
    w.gemm_flops = (captures + 1) * b.forward_flops() + search + 2 * b.linear_flops();
    w.elementwise = passes;
    // The captured inputs of a group, one group's outputs (l1, sqnr).
    w.working_bytes = 4 * T * widest_in * 3 + (quadratic ? 0.0 : 3 * 4 * Ts * static_cast<double>(b.mlp_width));
    return w;
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
