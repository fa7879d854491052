#include "jobs/model/trainer.hpp"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"

namespace qjobs::model {

void train(LlamaModel& model, const at::Tensor& tokens_in, const TrainOptions& o,
           const std::function<void(int64_t, double)>& on_step) {
  const auto tokens = tokens_in.flatten().to(at::kLong);
  const int64_t n = tokens.numel();
  if (n <= o.seqlen + 1) throw Error(ErrorKind::invalid_input, "training text shorter than one window");
  auto params = model.parameters();
  for (auto& [name, t] : params) *t = t->detach().clone().to(at::kFloat).requires_grad_(true);
  model.retie();
  std::vector<at::Tensor> m, v;
  for (auto& [name, t] : params) {
    m.push_back(at::zeros_like(*t));
    v.push_back(at::zeros_like(*t));
  }
  auto gen = at::detail::createCPUGenerator(o.seed);
  for (int64_t step = 1; step <= o.steps; ++step) {
    const auto starts = at::randint(0, n - o.seqlen - 1, {o.batch_size}, gen, at::kLong);
    const auto offsets = at::arange(o.seqlen + 1, at::kLong);
    const auto idx = starts.unsqueeze(1) + offsets.unsqueeze(0);
    const auto batch = tokens.index_select(0, idx.flatten()).view({o.batch_size, o.seqlen + 1});
    const auto input = batch.narrow(1, 0, o.seqlen);
    const auto target = batch.narrow(1, 1, o.seqlen);
    const auto logits = model.forward(input);
    const auto loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
    for (auto& [name, t] : params)
      if (t->grad().defined()) t->mutable_grad().zero_();
    loss.backward();

    const double lr = step <= o.warmup
                          ? o.lr * static_cast<double>(step) / static_cast<double>(o.warmup)
                          : 0.5 * o.lr *
                                (1 + std::cos(M_PI * static_cast<double>(step - o.warmup) /
                                              static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup))));
    at::NoGradGuard no_grad;
    double scale = 1.0;
    if (o.grad_clip > 0) {
      double sq = 0;
      for (auto& [name, t] : params) sq += t->grad().pow(2).sum().item<double>();
      const double norm = std::sqrt(sq);
      if (norm > o.grad_clip) scale = o.grad_clip / (norm + 1e-6);
    }
    const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(step));
    const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(step));
    for (std::size_t i = 0; i < params.size(); ++i) {
      at::Tensor& w = *params[i].second;
      const auto g = w.grad() * scale;
      m[i].mul_(o.beta1).add_(g, 1 - o.beta1);
      v[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
      if (w.dim() >= 2 && o.weight_decay > 0) w.mul_(1 - lr * o.weight_decay);
      const auto denom = (v[i] / bc2).sqrt_().add_(o.eps);
      w.addcdiv_(m[i], denom, -lr / bc1);
    }
    if (on_step) on_step(step, loss.item<double>());
  }
  for (auto& [name, t] : params) *t = t->detach();
  model.retie();
}

}  // namespace qjobs::model
