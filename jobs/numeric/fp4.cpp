#include "jobs/numeric/fp4.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "jobs/numeric/fp8.hpp"

namespace qjobs::numeric {
namespace {

constexpr float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// The magnitude code (0..7) of |x|: the nearest value, ties to the even code.
at::Tensor magnitude_code(const at::Tensor& x) {
  const auto a = at::nan_to_num(x.to(at::kFloat).abs(), 0.0, kE2m1Max, kE2m1Max);
  auto code = at::zeros(a.sizes(), a.options().dtype(at::kLong));
  for (int k = 0; k < 7; ++k) {
    const float mid = (kValues[k] + kValues[k + 1]) / 2;
    // Above the midpoint: the upper code; on it, the upper code when it is even.
    const auto up = (k + 1) % 2 == 0 ? a >= mid : a > mid;
    code += up.to(at::kLong);
  }
  return code;
}

const at::Tensor& value_table() {
  static const at::Tensor t = [] {
    auto v = at::empty({16}, at::kFloat);
    for (int c = 0; c < 16; ++c) v[c] = (c & 8 ? -1.0f : 1.0f) * kValues[c & 7];
    return v;
  }();
  return t;
}

}  // namespace

at::Tensor e2m1_encode(const at::Tensor& x) {
  const auto xf = x.to(at::kFloat);
  const auto mag = magnitude_code(xf);
  // A value that rounds to 0 is code 0 whatever its sign (no -0 code is written).
  const auto neg = at::logical_and(xf<0, mag> 0).to(at::kLong);
  return (mag + neg * 8).to(at::kByte);
}

at::Tensor e2m1_decode(const at::Tensor& codes) {
  if (codes.scalar_type() != at::kByte) throw Error(ErrorKind::invalid_input, "E2M1 codes must be uint8");
  return value_table().to(codes.device()).index({codes.to(at::kLong).bitwise_and(15)});
}

at::Tensor e2m1_round(const at::Tensor& x) { return e2m1_decode(e2m1_encode(x)); }

at::Tensor e8m0_decode(const at::Tensor& codes) {
  if (codes.scalar_type() != at::kByte) throw Error(ErrorKind::invalid_input, "E8M0 scales must be uint8");
  const auto e = codes.to(at::kFloat);
  return at::where(codes == 255, at::full_like(e, std::numeric_limits<float>::quiet_NaN()), at::exp2(e - 127));
}

int64_t fp4_block(Fp4Kind kind) { return kind == Fp4Kind::nvfp4 ? 16 : 32; }

double nvfp4_global_scale(double amax) {
  // A zero tensor keeps G = 1 (every block scale is 0 then).
  return amax > 0 && std::isfinite(amax) ? kFp8E4m3Max * kE2m1Max / amax : 1.0;
}

Fp4Scales fp4_scales(const at::Tensor& amax_in, Fp4Kind kind, double global_scale) {
  const auto amax = amax_in.to(at::kFloat);
  Fp4Scales s;
  if (kind == Fp4Kind::nvfp4) {
    s.codes = fp8_e4m3_encode(amax / kE2m1Max * global_scale);
    s.divisor = fp8_e4m3_decode(s.codes) / global_scale;
    return s;
  }
  // amax = m * 2^(e-1) with m in [1, 2) (frexp gives m/2 in [0.5, 1)). The
  // power of two of amax rounds up when m >= 1.75, as compressed-tensors'
  // round_to_power_2 does, then the largest E2M1 exponent (2) comes off.
  const auto [m, e] = at::frexp(amax);
  const auto up = (m * 2 >= 1.75).to(at::kLong);
  auto exponent = (e.to(at::kLong) - 1 + up - 2).clamp(-127, 127);
  exponent = at::where(amax > 0, exponent, at::full_like(exponent, -127));
  s.codes = (exponent + 127).to(at::kByte);
  s.divisor = at::exp2(exponent.to(at::kFloat));
  return s;
}

Fp4Blocks fp4_quantize(const at::Tensor& x_in, Fp4Kind kind, double global_scale) {
  const int64_t block = fp4_block(kind);
  const auto x = x_in.to(at::kFloat);
  const int64_t n = x.size(-1);
  if (n % block != 0)
    throw Error(ErrorKind::invalid_input, std::string(kind == Fp4Kind::nvfp4 ? "NVFP4" : "MXFP4") +
                                              " needs widths divisible by " + std::to_string(block) + ", got " +
                                              std::to_string(n));
  auto shape = x.sizes().vec();
  shape.back() = n / block;
  shape.push_back(block);
  const auto xb = x.reshape(shape);
  const auto amax = xb.abs().amax(-1, true);
  Fp4Blocks b;
  if (kind == Fp4Kind::nvfp4)
    b.global_scale = global_scale > 0 ? global_scale : nvfp4_global_scale(x.abs().max().item<double>());
  const auto sc = fp4_scales(amax, kind, b.global_scale);
  b.scale = sc.codes.squeeze(-1);
  const auto& scale = sc.divisor;  // [..., blocks, 1]
  const auto scaled = at::where(scale > 0, xb / scale, at::zeros_like(xb));
  b.codes = e2m1_encode(scaled).reshape(x.sizes());
  return b;
}

at::Tensor fp4_dequantize(const Fp4Blocks& b, Fp4Kind kind) {
  const int64_t block = fp4_block(kind);
  auto shape = b.codes.sizes().vec();
  shape.back() /= block;
  shape.push_back(block);
  const auto scale = kind == Fp4Kind::nvfp4 ? fp8_e4m3_decode(b.scale) / b.global_scale : e8m0_decode(b.scale);
  return (e2m1_decode(b.codes).reshape(shape) * scale.unsqueeze(-1)).reshape(b.codes.sizes());
}

at::Tensor fp4_fake_quant(const at::Tensor& x, Fp4Kind kind, double global_scale) {
  return fp4_dequantize(fp4_quantize(x, kind, global_scale), kind).to(x.scalar_type());
}

}  // namespace qjobs::numeric
