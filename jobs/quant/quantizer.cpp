#include "jobs/quant/quantizer.hpp"

#include <cmath>

#include "common/error.hpp"

namespace qjobs::quant {

namespace {

void check_quantizable(const at::Tensor& w, const WeightQuantConfig& cfg) {
  if (w.dim() != 2) throw Error(ErrorKind::invalid_input, "quantize_weight needs a 2-D weight");
  if (cfg.bits < 2 || cfg.bits > 8) throw Error(ErrorKind::invalid_input, "bits must be in [2, 8]");
}

// Quantizes x [rows, groups, g] with one scale per (row, group).
void quantize_groups(const at::Tensor& x, const WeightQuantConfig& cfg, at::Tensor& codes, at::Tensor& scales,
                     at::Tensor& zeros) {
  if (cfg.range == RangeMode::through_zero) {
    auto [s, z] = through_zero_params(x.reshape({-1, x.size(-1)}), cfg.bits, cfg.zero_point);
    scales = s.reshape({x.size(0), x.size(1), 1});
    zeros = z.reshape({x.size(0), x.size(1), 1});
    codes = quantize_codes(x, scales, zeros, cfg.bits);
    if (!cfg.zero_point) {
      // Report symmetric codes signed, like the min_max branch.
      codes = codes - zeros;
    }
    return;
  }
  if (cfg.zero_point) {
    const double qmax = (1 << cfg.bits) - 1;
    const auto mx = std::get<0>(x.max(-1, true));
    const auto mn = std::get<0>(x.min(-1, true));
    scales = (mx - mn).clamp_min(1e-5) / qmax;
    zeros = at::clamp(at::round(-mn / scales), 0, qmax);
    codes = at::clamp(at::round(x / scales) + zeros, 0, qmax);
  } else {
    const double qmax = (1 << (cfg.bits - 1)) - 1;
    const double qmin = -(1 << (cfg.bits - 1));
    scales = x.abs().amax(-1, true).clamp_min(1e-5) / qmax;
    codes = at::clamp(at::round(x / scales), qmin, qmax);
  }
}

}  // namespace

std::pair<at::Tensor, at::Tensor> through_zero_params(const at::Tensor& x_in, int bits, bool zero_point) {
  const auto x = x_in.to(at::kFloat);
  const double maxq = (1 << bits) - 1;
  auto xmin = at::clamp_max(std::get<0>(x.min(1, true)), 0);
  auto xmax = at::clamp_min(std::get<0>(x.max(1, true)), 0);
  if (!zero_point) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  const auto both_zero = at::logical_and(xmin == 0, xmax == 0);
  xmin = at::where(both_zero, at::full_like(xmin, -1), xmin);
  xmax = at::where(both_zero, at::full_like(xmax, 1), xmax);
  const auto scale = (xmax - xmin) / maxq;
  const auto zero = zero_point ? at::round(-xmin / scale) : at::full_like(scale, (maxq + 1) / 2);
  return {scale, zero};
}

at::Tensor quantize_codes(const at::Tensor& w, const at::Tensor& scale, const at::Tensor& zero, int bits) {
  return at::clamp(at::round(w / scale) + zero, 0, (1 << bits) - 1);
}

at::Tensor dequantize_codes(const at::Tensor& q, const at::Tensor& scale, const at::Tensor& zero) {
  return scale * (q - zero);
}

QuantizedWeight quantize_weight(const at::Tensor& w_in, const WeightQuantConfig& cfg) {
  check_quantizable(w_in, cfg);
  const auto w = w_in.to(at::kFloat).contiguous();
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t g = cfg.group_size <= 0 ? cols : std::min(cfg.group_size, cols);
  const int64_t full = cols / g, tail = cols % g;

  std::vector<at::Tensor> codes, scales, zeros;
  const auto run = [&](const at::Tensor& part, int64_t groups, int64_t width) {
    at::Tensor c, s, z;
    quantize_groups(part.reshape({rows, groups, width}), cfg, c, s, z);
    codes.push_back(c.reshape({rows, groups * width}));
    scales.push_back(s.reshape({rows, groups}));
    if (cfg.zero_point) zeros.push_back(z.reshape({rows, groups}));
  };
  if (full > 0) run(w.narrow(1, 0, full * g), full, g);
  if (tail > 0) run(w.narrow(1, full * g, tail), 1, tail);

  QuantizedWeight q;
  q.codes = at::cat(codes, 1).to(at::kInt);
  q.scales = at::cat(scales, 1);
  if (cfg.zero_point) q.zeros = at::cat(zeros, 1).to(at::kInt);
  if (!cfg.zero_point && cfg.range == RangeMode::through_zero) q.zeros = at::Tensor();
  q.group_size = g;
  return q;
}

namespace {

// quantize_groups followed by dequantize, in place on x [rows, groups, g]
// (a view). Each step is the float operation quantize_groups and
// dequantize() do, in their order; symmetric max|x| is max(max, -min),
// which is exact.
void fake_quantize_groups(at::Tensor x, const WeightQuantConfig& cfg) {
  at::Tensor scales, zeros;
  double lo = 0, hi = 0;
  if (cfg.range == RangeMode::through_zero) {
    auto [s, z] = through_zero_params(x.reshape({-1, x.size(-1)}), cfg.bits, cfg.zero_point);
    scales = s.reshape({x.size(0), x.size(1), 1});
    zeros = z.reshape({x.size(0), x.size(1), 1});
    hi = (1 << cfg.bits) - 1;
  } else {
    const auto mx = std::get<0>(x.max(-1, true));
    const auto mn = std::get<0>(x.min(-1, true));
    if (cfg.zero_point) {
      hi = (1 << cfg.bits) - 1;
      scales = (mx - mn).clamp_min(1e-5) / hi;
      zeros = at::clamp(at::round(-mn / scales), 0, hi);
    } else {
      hi = (1 << (cfg.bits - 1)) - 1;
      lo = -(1 << (cfg.bits - 1));
      scales = at::maximum(mx, -mn).clamp_min(1e-5) / hi;
    }
  }
  x.div_(scales).round_();
  if (zeros.defined()) x.add_(zeros).clamp_(lo, hi).sub_(zeros);
  else x.clamp_(lo, hi);
  x.mul_(scales);
}

}  // namespace

at::Tensor& fake_quantize_(at::Tensor& w, const WeightQuantConfig& cfg) {
  check_quantizable(w, cfg);
  if (w.scalar_type() != at::kFloat || !w.is_contiguous())
    throw Error(ErrorKind::internal, "fake_quantize_ needs a contiguous float32 weight");
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t g = cfg.group_size <= 0 ? cols : std::min(cfg.group_size, cols);
  const int64_t full = cols / g, tail = cols % g;
  // Views of w: splitting the contiguous last dimension needs no copy.
  if (full > 0) fake_quantize_groups(w.narrow(1, 0, full * g).view({rows, full, g}), cfg);
  if (tail > 0) fake_quantize_groups(w.narrow(1, full * g, tail).view({rows, 1, tail}), cfg);
  return w;
}

at::Tensor fake_quantize(const at::Tensor& w, const WeightQuantConfig& cfg) {
  check_quantizable(w, cfg);
  auto f = w.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  fake_quantize_(f, cfg);
  return f.to(w.scalar_type());
}

numeric::IntWeight to_int_weight(const QuantizedWeight& q, int bits) {
  numeric::IntWeight w;
  w.bits = bits;
  w.group_size = q.group_size;
  w.scales = q.scales;
  // Codes of up to 8 bits are bytes: a quarter of the memory of int32.
  const auto code_type = bits <= 8 ? at::kByte : at::kInt;
  if (q.zeros.defined()) {
    w.codes = q.codes.to(code_type);
    w.zeros = q.zeros;
  } else {
    const int mid = 1 << (bits - 1);
    w.codes = (q.codes + mid).to(code_type);
    w.zeros = at::full(q.scales.sizes(), mid, q.scales.options().dtype(at::kInt));
  }
  w.g_idx = at::arange(q.codes.size(1), q.codes.options().dtype(at::kLong)).div(q.group_size, "floor").to(at::kInt);
  return w;
}

at::Tensor QuantizedWeight::dequantize() const {
  const int64_t cols = codes.size(1);
  const auto idx = at::arange(cols, codes.options().dtype(at::kLong)).div(group_size, "floor");
  const auto s = scales.index_select(1, idx);
  auto c = codes.to(at::kFloat);
  if (zeros.defined()) c = c - zeros.index_select(1, idx).to(at::kFloat);
  return c * s;
}

at::Tensor lpbq_scales(const at::Tensor& scales, int bits, int decompressed_bits) {
  if (bits >= decompressed_bits)
    throw Error(ErrorKind::invalid_input, "LPBQ needs fewer weight bits than its block scales' 8");
  const double levels = std::ldexp(1.0, decompressed_bits - bits);
  const auto s = scales.to(at::kFloat);
  const auto channel = s.amax(1, true) / levels;
  const auto k = at::clamp(at::round(s / channel), 1, levels);
  return k * channel;
}

QuantizedWeight quantize_with_scales(const at::Tensor& w_in, const at::Tensor& scales, int64_t group_size, int bits) {
  const auto w = w_in.to(at::kFloat);
  const int64_t rows = w.size(0), cols = w.size(1), groups = scales.size(1);
  if (group_size * groups != cols)
    throw Error(ErrorKind::internal, "quantize_with_scales: groups do not cover the row");
  const double qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  QuantizedWeight q;
  q.scales = scales.to(at::kFloat).contiguous();
  q.codes = at::clamp(at::round(w.reshape({rows, groups, group_size}) / q.scales.unsqueeze(2)), qmin, qmax)
                .reshape({rows, cols})
                .to(at::kInt);
  q.group_size = group_size;
  return q;
}

}  // namespace qjobs::quant
