#include "jobs/quant/hqq_params.hpp"

#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

const ParamTable<HqqParams>& hqq_params() {
  static const auto t =
      ParamTable<HqqParams>()
          .add(&HqqParams::w_bit, param::integer("W_BIT", "weight bits", nullptr, 2, 8))
          .add(&HqqParams::group_size, group_size_spec("input columns per group; -1 = per output channel"))
          .add(&HqqParams::zero_points,
               param::string("ZERO_POINTS",
                             "real (HQQ's own) or integer (rounded as the last step, what packed formats store); "
                             "unset: integer for a packed export, real for fake_quant",
                             nullptr, {"real", "integer"}))
          .add(&HqqParams::layer_overrides, layer_overrides_spec(false));
  return t;
}

AlgorithmInfo hqq_info() {
  return {"HQQ", "half-quadratic calibration-free weight quantization", true, hqq_params().specs()};
}

}  // namespace qjobs::quant
