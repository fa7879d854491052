#include "jobs/quant/gptq_params.hpp"

#include <algorithm>
#include <set>

namespace qjobs::quant {

const ParamTable<GptqParams>& gptq_params() {
  static const auto t =
      weight_only_table<GptqParams>()
          .add(&GptqParams::damp_percent,
               param::number("DAMP_PERCENT", "damping as a share of the mean Hessian diagonal", nullptr, 0, 1))
          .add(&GptqParams::block_size,
               param::integer("BLOCK_SIZE", "columns per lazy update block", nullptr, 1, 1 << 16))
          .add(&GptqParams::desc_act,
               param::boolean("DESC_ACT", "act-order: columns by decreasing Hessian diagonal", nullptr))
          .add(&GptqParams::static_groups,
               param::boolean("STATIC_GROUPS", "group parameters from the weight before updates", nullptr))
          .add(&GptqParams::true_sequential,
               param::boolean("TRUE_SEQUENTIAL", "q,k,v -> o -> gate,up -> down inside a block", nullptr))
          .add(&GptqParams::w_format,
               param::string("W_FORMAT",
                             "weight grid: int (W_BIT, Q_GROUP_SIZE), or nvfp4 / mxfp4 (FP4 E2M1 blocks of 16 / 32; "
                             "W_BIT, Q_GROUP_SIZE and ZERO_POINT do not apply)",
                             nullptr, {"int", "nvfp4", "mxfp4"}));
  return t;
}

AlgorithmInfo gptq_info() {
  AlgorithmInfo a{"GPTQ", "GPTQ Hessian-based weight quantization", true, gptq_params().specs(), 128, 2048};
  a.weights = [](const nlohmann::json& s) { return gptq_params().parse(s).weight_scheme(); };
  a.output = [](const nlohmann::json& s) {
    const std::string f = gptq_params().parse(s).w_format;
    return AlgorithmOutput{.int_weight_only = true, .w_format = f, .int_weights = f == "int", .onnx_encodings = true};
  };
  // Act-order's groups: compressed-tensors and vLLM read them in column
  // order only, the ONNX graph's are consecutive columns.
  a.check = [](const nlohmann::json& s, const std::string& format) {
    auto out = weight_only_check(s, format);
    const GptqParams p = gptq_params().parse(s);
    if (!p.desc_act || p.static_groups) return out;
    if (format == "compressed-tensors")
      out.push_back(
          {{},
           false,
           "DESC_ACT: compressed-tensors (0.13 on) and current vLLM read act-order only as actorder \"weight\", "
           "groups in column order: the job runs act-order with STATIC_GROUPS: true. Set it to say so (and to "
           "make a fake_quant twin the same model); EXPORT_FORMAT: gptq keeps a per-column g_idx, which vLLM's "
           "gptq_marlin serves"});
    else if (format == "onnx" && p.w_format == "int")
      out.push_back({{"DESC_ACT"},
                     true,
                     "the ONNX graph's weight groups are consecutive columns: DESC_ACT needs STATIC_GROUPS: true for "
                     "EXPORT_FORMAT onnx"});
    return out;
  };
  // Counted from GptqAlgorithm::run (gptq.cpp), Linear by Linear as the
  // block has them: the inputs captured once per sequential group (one
  // forward each) and the block's output, one Hessian per input (Linears
  // reading one input share it; a routed expert sees its share of the
  // tokens), the column loop (out x in^2 per Linear), the Cholesky factor,
  // inverse and factor again (4/3 in^3), and the two products of every
  // Linear's output error.
  a.block_work = [](const nlohmann::json& section, const BlockShape& b) {
    const GptqParams p = gptq_params().parse(section);
    const double T = static_cast<double>(b.tokens());
    std::set<std::string> inputs;
    std::set<int> groups;
    double hessians = 0, columns = 0, factor = 0, widest_in = 0, largest = 0;
    for (const auto& l : b.linears) {
      const double in = static_cast<double>(l.in);
      if (inputs.insert(l.input).second) hessians += 2 * T * l.token_share * in * in;
      groups.insert(l.group);
      columns += static_cast<double>(l.out) * in * in;
      factor += 4.0 / 3.0 * in * in * in;
      widest_in = std::max(widest_in, in);
      largest = std::max(largest, l.weights());
    }
    const double captures = p.true_sequential ? static_cast<double>(groups.size()) : 1;
    BlockWork w;
    w.gemm_flops = (captures + 1) * b.forward_flops() + hessians + columns + 2 * b.linear_flops();
    w.factor_flops = factor;
    // The column loop's rounding and error of every weight, about 10 passes.
    w.elementwise = 10 * static_cast<double>(b.params);
    // The widest captured input, the Hessian and its inverse's factor, the
    // largest Linear's weights three times over.
    w.working_bytes = 4 * T * widest_in + 2 * 4 * widest_in * widest_in + 3 * 4 * largest;
    return w;
  };
  return a;
}

}  // namespace qjobs::quant
