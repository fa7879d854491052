#include "jobs/numeric/fp8.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"

namespace qjobs::numeric {
namespace {

// The value of one code from its fields.
float code_value(int code) {
  const int sign = (code >> 7) & 1, field = (code >> 3) & 15, mant = code & 7;
  if (field == 15 && mant == 7) return std::numeric_limits<float>::quiet_NaN();
  const double mag = field == 0 ? std::ldexp(mant / 8.0, -6) : std::ldexp(1.0 + mant / 8.0, field - 7);
  return static_cast<float>(sign ? -mag : mag);
}

const at::Tensor& decode_table() {
  static const at::Tensor table = [] {
    auto t = at::empty({256}, at::kFloat);
    auto* p = t.data_ptr<float>();
    for (int c = 0; c < 256; ++c) p[c] = code_value(c);
    return t;
  }();
  return table;
}

}  // namespace

at::Tensor fp8_e4m3_round(const at::Tensor& x_in) {
  const auto x = x_in.to(at::kFloat);
  const auto a = x.abs().clamp_max(kFp8E4m3Max);  // saturate (inf included); NaN passes through
  // floor(log2 a) exactly: a = m * 2^ex with m in [0.5, 1).
  const auto [m, ex] = at::frexp(a);
  // Normal numbers have 3 fraction bits below their leading bit; below 2^-6
  // the quantum stays 2^-9 (subnormals).
  const auto e = (ex.to(at::kFloat) - 1).clamp_min(-6);
  const auto quantum = at::exp2(e - 3);
  auto q = at::round(a / quantum) * quantum;  // at::round: half to even
  q = q.clamp_max(kFp8E4m3Max);
  return at::where(x.isnan(), x, at::copysign(q, x));
}

at::Tensor fp8_e4m3_encode(const at::Tensor& x_in) {
  const auto x = x_in.to(at::kFloat);
  const auto q = fp8_e4m3_round(x);
  const auto a = q.abs();
  const auto [m, ex] = at::frexp(a);
  const auto e = ex.to(at::kLong) - 1;  // exponent of normal values
  const auto normal = a >= std::ldexp(1.0, -6);
  // Normal: field e + 7, mantissa (a / 2^e - 1) * 8. Subnormal: field 0,
  // mantissa a / 2^-9.
  const auto field = at::where(normal, e + 7, at::zeros_like(e));
  const auto mant_normal = ((a / at::exp2(e.to(at::kFloat)) - 1) * 8).round().to(at::kLong);
  const auto mant_sub = (a / std::ldexp(1.0, -9)).round().to(at::kLong);
  auto code = at::where(normal, field * 8 + mant_normal, mant_sub);
  code = code + at::signbit(q).to(at::kLong) * 128;
  code = at::where(x.isnan(), at::full_like(code, 0x7F), code);
  return code.to(at::kByte);
}

at::Tensor fp8_e4m3_decode(const at::Tensor& codes) {
  if (codes.scalar_type() != at::kByte) throw Error(ErrorKind::invalid_input, "FP8 codes must be uint8");
  return decode_table().to(codes.device()).index({codes.to(at::kLong)});
}

}  // namespace qjobs::numeric
