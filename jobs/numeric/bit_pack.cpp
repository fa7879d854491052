#include "jobs/numeric/bit_pack.hpp"

namespace qjobs::numeric {

at::Tensor pack_last(const at::Tensor& x, int bits, const int* order) {
  const int per = 32 / bits;
  auto v = x.to(at::kLong).contiguous();
  const int64_t rows = v.size(0);
  // A width that words do not divide is padded with zeros (compressed-
  // tensors does the same; weight_shape says where the values end).
  if (v.size(1) % per != 0) v = at::cat({v, at::zeros({rows, per - v.size(1) % per}, v.options())}, 1);
  const int64_t cols = v.size(1);
  auto out = at::zeros({rows, cols / per}, at::kLong);
  const auto g = v.view({rows, cols / per, per});
  for (int k = 0; k < per; ++k) out.bitwise_or_(g.select(2, order ? order[k] : k).bitwise_left_shift(bits * k));
  // Reinterpret the low 32 bits as signed int32, as the checkpoints store them.
  return at::where(out >= (int64_t{1} << 31), out - (int64_t{1} << 32), out).to(at::kInt);
}

at::Tensor unpack_last(const at::Tensor& words, int bits, const int* order) {
  const int per = 32 / bits;
  const auto w = words.to(at::kLong).bitwise_and(static_cast<int64_t>(0xffffffffLL));
  const int64_t rows = w.size(0), n = w.size(1);
  auto out = at::empty({rows, n, per}, at::kLong);
  for (int k = 0; k < per; ++k)
    out.select(2, order ? order[k] : k)
        .copy_(w.bitwise_right_shift(bits * k).bitwise_and(static_cast<int64_t>((1 << bits) - 1)));
  return out.view({rows, n * per}).to(at::kInt);
}

}  // namespace qjobs::numeric
