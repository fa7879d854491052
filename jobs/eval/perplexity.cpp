#include "jobs/eval/perplexity.hpp"

#include <chrono>
#include <cmath>

#include "common/error.hpp"

namespace qjobs::eval {

PerplexityResult perplexity(const model::LlamaModel& model, const at::Tensor& ids_in, const PerplexityOptions& o,
                            const std::function<void(int64_t, int64_t)>& progress) {
  at::NoGradGuard no_grad;
  const auto ids = ids_in.flatten().to(at::kLong);
  PerplexityResult r;
  r.tokens = ids.numel();
  if (o.seqlen < 2) throw Error(ErrorKind::invalid_input, "perplexity: seqlen must be at least 2");
  int64_t n = r.tokens / o.seqlen;
  if (n == 0)
    throw Error(ErrorKind::invalid_input, "perplexity: the text has " + std::to_string(r.tokens) +
                                              " tokens, fewer than one window of " + std::to_string(o.seqlen));
  if (o.num_samples > 0) n = std::min(n, o.num_samples);
  r.windows = n;
  const auto t0 = std::chrono::steady_clock::now();
  double nll_sum = 0;
  const int64_t bs = std::max<int64_t>(1, o.batch_size);
  if (progress) progress(0, n);
  for (int64_t w = 0; w < n; w += bs) {
    const int64_t b = std::min(bs, n - w);
    const auto batch = ids.narrow(0, w * o.seqlen, b * o.seqlen).view({b, o.seqlen});
    const auto logits = model.forward(batch);  // float32 [b, T, V]
    const auto logp = at::log_softmax(logits.narrow(1, 0, o.seqlen - 1), -1);
    const auto targets = batch.narrow(1, 1, o.seqlen - 1).to(logp.device()).unsqueeze(-1);
    nll_sum -= logp.gather(-1, targets).to(at::kDouble).sum().item<double>();
    if (progress) progress(w + b, n);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.predictions = n * (o.seqlen - 1);
  r.mean_nll = nll_sum / static_cast<double>(r.predictions);
  r.ppl = std::exp(r.mean_nll);
  r.tokens_per_s = r.seconds > 0 ? static_cast<double>(n * o.seqlen) / r.seconds : 0;
  return r;
}

}  // namespace qjobs::eval
