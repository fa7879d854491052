#include "jobs/quant/rtn_params.hpp"

namespace qjobs::quant {

const ParamTable<RtnParams>& rtn_params() {
  static const auto t = weight_only_table<RtnParams>();
  return t;
}

AlgorithmInfo rtn_info() {
  return {"RTN", "round-to-nearest weight quantization (no calibration)", true, rtn_params().specs()};
}

}  // namespace qjobs::quant
