#include "jobs/quant/awq_params.hpp"

#include <algorithm>
#include <cmath>

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
  // Counted from AwqAlgorithm::run (awq.cpp): the block's output, its
  // inputs captured before and after scaling, each scale group's output at
  // the original and N_GRID scales, the clip search on sampled tokens, and
  // the two products of every Linear's output error.
  a.block_work = [](const nlohmann::json& section, const BlockShape& b) {
    const AwqParams p = awq_params().parse(section);
    const double T = static_cast<double>(b.tokens()), G = static_cast<double>(p.n_grid);
    const double h = static_cast<double>(b.hidden), q = static_cast<double>(b.q_width),
                 m = static_cast<double>(b.mlp_width);
    // Scale groups: attention (q/k/v) and the MLP (gate/up) by their module's
    // output (one forward of the block); v -> o where their shapes match (no
    // grouped KV heads) and up -> down by the output projection's product.
    // The clip search: every Linear whose output does not feed the scores,
    // on the window's tokens taken at a stride that leaves about 512, at the
    // original and n_grid / 2 ranges.
    const bool v_to_o = b.kv_width == b.q_width;
    double groups = b.forward_flops(), clipped = 0, clipped_tokens = 0;
    for (const auto& l : b.linears) {
      if (l.output_proj && (l.group == 3 || v_to_o)) groups += 2 * T * l.token_share * l.weights();
      if (!l.feeds_scores && p.clip) clipped += l.weights(), clipped_tokens += l.token_share * l.weights();
    }
    const double stride = std::max(1.0, std::floor(T / 512));
    const double sampled = std::ceil(T / stride);
    const double gs = p.group_size > 0 ? static_cast<double>(p.group_size) : h;
    BlockWork w;
    w.gemm_flops =
        3 * b.forward_flops() + (G + 1) * groups + (1 + G / 2) * 2 * sampled * clipped_tokens + 2 * b.linear_flops();
    // About 14 passes per rounding of a weight (scale, zero, divide, round,
    // clamp, back), per grid point; the clip search's error per group.
    w.elementwise = 14 * (G * static_cast<double>(b.params) + G / 2 * clipped) + G / 2 * 4 * sampled * clipped / gs;
    // Captured inputs twice (before and after scaling), the saved weights of
    // a group and its rounding buffer, the clip search's chunks (64 Mi
    // floats each, two alive).
    w.working_bytes = 2 * 4 * T * (2 * h + q + m) + 2 * 4 * (2 * h * m) +
                      std::min(2.0 * 4 * (64 << 20), 2 * 4 * sampled * clipped / gs);
    return w;
  };
  return a;
}

}  // namespace qjobs::quant
