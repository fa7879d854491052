#include "jobs/quant/hqq.hpp"
#include "jobs/quant/hqq_params.hpp"

#include <cmath>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"

#include "jobs/model/checkpoint.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

HqqResult hqq_quantize(const at::Tensor& w_in, int bits, int64_t group_size, bool integer_zeros, int iters, double p,
                       double beta, double kappa) {
  at::NoGradGuard no_grad;
  const auto w = w_in.to(at::kFloat);
  const int64_t rows = w.size(0), cols = w.size(1);
  const int64_t g = group_size <= 0 || cols % group_size != 0 ? cols : group_size;
  const auto W = w.reshape({-1, g});  // one group per row
  const double maxq = (1 << bits) - 1;
  const auto mn = std::get<0>(W.min(1, true)), mx = std::get<0>(W.max(1, true));
  // HQQ keeps the inverse scale: q = round(W * scale + zero).
  const auto scale = (maxq / (mx - mn)).clamp_max(2e4);
  auto zero = -mn * scale;
  double best = 1e300;
  at::Tensor best_zero = zero.clone();
  for (int i = 0; i < iters; ++i) {
    const auto Wq = at::clamp(at::round(W * scale + zero), 0, maxq);
    const auto Wr = (Wq - zero) / scale;
    const auto e = W - Wr;
    // Generalised soft-thresholding for the l_p norm (p < 1).
    const auto We = at::sign(e) * at::relu(e.abs() - (1.0 / beta) * e.abs().pow(p - 1));
    zero = (Wq - (W - We) * scale).mean(1, true);
    beta *= kappa;
    const double err = (W - Wr).abs().mean().item<double>();
    if (err < best) {
      best = err;
      best_zero = zero.clone();
    } else {
      break;
    }
  }
  HqqResult r;
  const auto dequant = [&](const at::Tensor& z) {
    return ((at::clamp(at::round(W * scale + z), 0, maxq) - z) / scale).reshape({rows, cols});
  };
  r.real_zero_weight = dequant(best_zero);
  if (!integer_zeros) {
    r.weight = r.real_zero_weight;
    return r;
  }
  // The last step for a packed export: zero points rounded to the integer
  // grid (what every packed format stores), codes taken again against them.
  const auto z = at::clamp(at::round(best_zero), 0, maxq);
  const auto codes = at::clamp(at::round(W * scale + z), 0, maxq);
  // Dequantized as every reader of the packed form does, (q - z) * (1 / scale):
  // the fake_quant twin is the packed model to the last bit.
  r.weight = ((codes - z) * (1.0 / scale)).reshape({rows, cols});
  numeric::IntWeight iw;
  iw.bits = bits;
  iw.group_size = g;
  iw.codes = codes.reshape({rows, cols}).to(at::kByte);
  iw.scales = (1.0 / scale).reshape({rows, cols / g});
  iw.zeros = z.reshape({rows, cols / g}).to(at::kInt);
  iw.g_idx = at::arange(cols, w.options().dtype(at::kLong)).div(g, "floor").to(at::kInt);
  r.ints = iw;
  return r;
}

QuantOutput HqqAlgorithm::run(const QuantInputs& in) {
  const HqqParams p = hqq_params().parse(in.params);
  const std::vector<std::string> targets =
      model::quantized_linear_weights(model::ModelConfig::from_json(in.ckpt->config()));
  QuantOutput out;
  LayerSpill spill(in.state_dir, out, in.keep_int_codes);
  const auto total = static_cast<int64_t>(targets.size());
  const bool integer_zeros = p.zero_points ? *p.zero_points == "integer" : in.packed_export;
  if (in.packed_export && !integer_zeros)
    throw Error(ErrorKind::invalid_input,
                "HQQ with ZERO_POINTS real has no packed form: packed formats store integer zero points");
  double real_zero_err = 0, rounded_err = 0;
  int64_t measured = 0;
  in.progress(0, total, "");
  for (int64_t i = 0; i < total; ++i) {
    const auto& name = targets[static_cast<std::size_t>(i)];
    const auto plan = quant_for(in.plan, name.substr(0, name.size() - 7), RangeMode::min_max);
    if (!plan.skip) {
      const at::Tensor w = in.ckpt->tensor(name);
      const auto w32 = w.to(in.compute.device, at::kFloat);
      model::release_mapped(w);
      const auto r = hqq_quantize(w32, plan.cfg.bits, plan.cfg.group_size, integer_zeros);
      const double norm = std::max(w32.norm().item<double>(), 1e-30);
      const double err = (r.weight - w32).norm().item<double>() / norm;
      out.layer_errors.push_back({name, err, (r.weight - w32).abs().max().item<double>(), -1});
      real_zero_err += (r.real_zero_weight - w32).norm().item<double>() / norm;
      rounded_err += err;
      ++measured;
      if (integer_zeros) out.int_weights[name.substr(0, name.size() - 7)] = r.ints;
      if (in.keep_float_weights) out.replaced[name] = r.weight.to(w.scalar_type());
    }
    spill.after(name, i + 1 == total ? "" : targets[static_cast<std::size_t>(i + 1)]);
    in.progress(i + 1, total, name);
  }
  out.quantization_config = {{"quant_method", "hqq"},
                             {"format", "fake_quant"},
                             {"bits", p.w_bit},
                             {"group_size", p.group_size},
                             {"optimizer", "half-quadratic, p=0.7, beta=10, 20 iterations, early stop"},
                             {"overrides", p.layer_overrides}};
  if (measured > 0) {
    // What rounding the zero points costs: mean relative weight error with
    // HQQ's real-valued zeros and with the integer zeros that were written.
    out.quantization_config["zero_points"] = integer_zeros ? "integer (rounded as the last step)" : "real-valued";
    out.quantization_config["mean_rel_err_real_zero"] = real_zero_err / static_cast<double>(measured);
    out.quantization_config["mean_rel_err_written"] = rounded_err / static_cast<double>(measured);
  }
  return out;
}

std::unique_ptr<QuantAlgorithm> make_hqq() { return std::make_unique<HqqAlgorithm>(); }

}  // namespace qjobs::quant
