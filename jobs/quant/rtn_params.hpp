// RTN's parameters: the weight-only keys (jobs/quant/weight_only_params.hpp).
#pragma once

#include "spec/algorithm_catalog.hpp"
#include "jobs/quant/weight_only_params.hpp"

namespace qjobs::quant {

using RtnParams = WeightOnlyParams;

const ParamTable<RtnParams>& rtn_params();
AlgorithmInfo rtn_info();

}  // namespace qjobs::quant
