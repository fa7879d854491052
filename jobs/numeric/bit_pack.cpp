#include "jobs/numeric/bit_pack.hpp"

#include <string>

#include "common/error.hpp"

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

at::Tensor pack_dense(const at::Tensor& x, int bits) {
  auto v = x.to(at::kLong).contiguous();
  const int64_t rows = v.size(0), cols = v.size(1);
  // 32 values take exactly `bits` words: pad the row to a multiple of 32.
  const int64_t padded = (cols + 31) / 32 * 32;
  if (padded > cols) v = at::cat({v, at::zeros({rows, padded - cols}, v.options())}, 1);
  const auto g = v.view({rows, padded / 32, 32});
  auto out = at::zeros({rows, padded / 32, bits}, at::kLong);
  for (int i = 0; i < 32; ++i) {
    const int start = i * bits, word = start / 32, shift = start % 32;
    const auto value = g.select(2, i);
    out.select(2, word).bitwise_or_(value.bitwise_left_shift(shift).bitwise_and(int64_t{0xffffffff}));
    if (shift + bits > 32) out.select(2, word + 1).bitwise_or_(value.bitwise_right_shift(32 - shift));
  }
  const auto words = out.view({rows, padded / 32 * bits}).narrow(1, 0, (cols * bits + 31) / 32);
  return at::where(words >= (int64_t{1} << 31), words - (int64_t{1} << 32), words).to(at::kInt).contiguous();
}

at::Tensor unpack_dense(const at::Tensor& words, int bits, int64_t cols) {
  const int64_t rows = words.size(0), n = words.size(1);
  if (n * 32 < cols * bits)
    throw Error(ErrorKind::data_corruption, "packed weights of " + std::to_string(n) +
                                                " words per row hold fewer than " + std::to_string(cols) +
                                                " values of " + std::to_string(bits) + " bits");
  auto w = words.to(at::kLong).bitwise_and(int64_t{0xffffffff});
  const int64_t groups = (n + bits - 1) / bits;
  if (groups * bits > n) w = at::cat({w, at::zeros({rows, groups * bits - n}, w.options())}, 1);
  const auto g = w.view({rows, groups, bits});
  auto out = at::empty({rows, groups, 32}, at::kLong);
  const int64_t mask = (int64_t{1} << bits) - 1;
  for (int i = 0; i < 32; ++i) {
    const int start = i * bits, word = start / 32, shift = start % 32;
    auto value = g.select(2, word).bitwise_right_shift(shift);
    if (shift + bits > 32) value = value.bitwise_or(g.select(2, word + 1).bitwise_left_shift(32 - shift));
    out.select(2, i).copy_(value.bitwise_and(mask));
  }
  return out.view({rows, groups * 32}).narrow(1, 0, cols).to(at::kInt);
}

}  // namespace qjobs::numeric
