#include "jobs/numeric/quantized_weight.hpp"

namespace qjobs::numeric {

at::Tensor IntWeight::dequantize() const {
  const auto gi = g_idx.to(at::kLong);
  return (codes.to(at::kFloat) - zeros.index_select(1, gi).to(at::kFloat)) * scales.index_select(1, gi);
}

IntWeight IntWeight::cpu() const {
  IntWeight c = *this;
  c.codes = codes.to(at::kCPU);
  c.scales = scales.to(at::kCPU);
  c.zeros = zeros.to(at::kCPU);
  c.g_idx = g_idx.to(at::kCPU);
  return c;
}

int64_t IntWeight::format_group_size() const { return scales.size(1) == 1 ? -1 : group_size; }

at::Tensor Fp4Weight::dequantize() const {
  Fp4Blocks b{codes, scale, global_scale};
  return fp4_dequantize(b, kind);
}

}  // namespace qjobs::numeric
