#include "jobs/quant/hqq.hpp"

#include <cmath>

#include "jobs/model/checkpoint.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"

namespace qjobs::quant {

at::Tensor hqq_quantize(const at::Tensor& w_in, int bits, int64_t group_size, int iters, double p, double beta,
                        double kappa) {
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
  const auto Wq = at::clamp(at::round(W * scale + best_zero), 0, maxq);
  return ((Wq - best_zero) / scale).reshape({rows, cols});
}

QuantOutput HqqAlgorithm::run(const QuantInputs& in) {
  const auto& p = in.params;
  std::vector<std::string> targets;
  for (const auto& name : in.ckpt->tensor_names())
    if (model::is_decoder_linear_weight(name)) targets.push_back(name);
  QuantOutput out;
  LayerSpill spill(in.state_dir, out);
  const auto total = static_cast<int64_t>(targets.size());
  in.progress(0, total, "");
  for (int64_t i = 0; i < total; ++i) {
    const auto& name = targets[static_cast<std::size_t>(i)];
    const auto plan = plan_for(name.substr(0, name.size() - 7), p, RangeMode::min_max);
    if (!plan.skip) {
      const at::Tensor w = in.ckpt->tensor(name);
      const auto w32 = w.to(in.compute.device, at::kFloat);
      model::release_mapped(w);
      const auto deq = hqq_quantize(w32, plan.cfg.bits, plan.cfg.group_size);
      out.layer_errors.push_back({name, (deq - w32).norm().item<double>() / std::max(w32.norm().item<double>(), 1e-30),
                                  (deq - w32).abs().max().item<double>(), -1});
      out.replaced[name] = deq.to(w.scalar_type());
    }
    spill.after(name, i + 1 == total ? "" : targets[static_cast<std::size_t>(i + 1)]);
    in.progress(i + 1, total, name);
  }
  out.quantization_config = {{"quant_method", "hqq"}, {"format", "fake_quant"}, {"bits", p.value("W_BIT", 4)},
                             {"group_size", p.value("Q_GROUP_SIZE", 128)}, {"optimizer", "half-quadratic, p=0.7, beta=10, 20 iterations, early stop"},
                             {"overrides", describe_overrides(p)}};
  return out;
}

}  // namespace qjobs::quant
