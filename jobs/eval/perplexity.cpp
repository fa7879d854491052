#include "jobs/eval/perplexity.hpp"

#include <chrono>
#include <cmath>
#include <ATen/core/grad_mode.h>

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
  const int64_t bs = std::max<int64_t>(1, o.batch_size);
  if (progress) progress(0, n);
  // NLL sums stay on the device; one sync at the end.
  at::Tensor nll = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(model.device()));
  const auto score = [&](const at::Tensor& batch, const at::Tensor& logits) {  // float32 [b, T, V]
    const auto logp = at::log_softmax(logits.narrow(1, 0, o.seqlen - 1), -1);
    const auto targets = batch.narrow(1, 1, o.seqlen - 1).to(logp.device()).unsqueeze(-1);
    nll.sub_(logp.gather(-1, targets).to(at::kDouble).sum().to(nll.device()));
  };
  const auto batch_at = [&](int64_t w, int64_t b) {
    return ids.narrow(0, w * o.seqlen, b * o.seqlen).view({b, o.seqlen});
  };
  if (!model.streamed()) {
    for (int64_t w = 0; w < n; w += bs) {
      const int64_t b = std::min(bs, n - w);
      const auto batch = batch_at(w, b);
      score(batch, model.forward(batch));
      if (progress) progress(w + b, n);
    }
  } else {
    // Block by block over the windows: each layer is onloaded once per
    // chunk of windows whose hidden states take at most ~1 GiB, so a model
    // larger than the device costs one pass over its weights per chunk.
    const int64_t per_window = o.seqlen * model.config().hidden * static_cast<int64_t>(c10::elementSize(model.dtype()));
    const int64_t chunk = std::max<int64_t>(bs, ((int64_t{1} << 30) / std::max<int64_t>(per_window, 1)) / bs * bs);
    const int64_t L = model.config().layers;
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t cn = std::min(chunk, n - c0);
      std::vector<at::Tensor> batches, hs;
      for (int64_t w = c0; w < c0 + cn; w += bs) {
        batches.push_back(batch_at(w, std::min(bs, c0 + cn - w)));
        hs.push_back(model.embed(batches.back()));
      }
      for (int64_t l = 0; l < L; ++l) {
        auto layer = model.materialize(l);
        for (auto& h : hs) h = model.run_layer(layer, l, h);
        model.release(layer);
        if (progress) progress(c0 + cn * (l + 1) / (L + 1), n);
      }
      for (std::size_t i = 0; i < hs.size(); ++i) score(batches[i], model.head(hs[i]));
      if (progress) progress(c0 + cn, n);
    }
  }
  const double nll_sum = nll.item<double>();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.predictions = n * (o.seqlen - 1);
  r.mean_nll = nll_sum / static_cast<double>(r.predictions);
  r.ppl = std::exp(r.mean_nll);
  r.tokens_per_s = r.seconds > 0 ? static_cast<double>(n * o.seqlen) / r.seconds : 0;
  return r;
}

}  // namespace qjobs::eval
