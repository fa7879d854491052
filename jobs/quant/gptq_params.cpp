#include "jobs/quant/gptq_params.hpp"

namespace qjobs::quant {

const ParamTable<GptqParams>& gptq_params() {
  static const auto t =
      weight_only_table<GptqParams>()
          .add(&GptqParams::damp_percent,
               param::number("DAMP_PERCENT", "damping as a share of the mean Hessian diagonal", nullptr, 0, 1))
          .add(&GptqParams::block_size, param::integer("BLOCK_SIZE", "columns per lazy update block", nullptr, 1, 1 << 16))
          .add(&GptqParams::desc_act, param::boolean("DESC_ACT", "act-order: columns by decreasing Hessian diagonal", nullptr))
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
  return {"GPTQ", "GPTQ Hessian-based weight quantization", true, gptq_params().specs(), 128, 2048};
}

}  // namespace qjobs::quant
