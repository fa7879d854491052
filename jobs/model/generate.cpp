#include "jobs/model/generate.hpp"

#include <algorithm>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include "common/error.hpp"

namespace qjobs::model {

std::vector<int64_t> generate(const LlamaModel& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int64_t)>& on_token) {
  if (prompt.empty()) throw Error(ErrorKind::invalid_input, "generate: the prompt has no tokens");
  at::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(o.seed);
  KVCache cache;
  std::vector<int64_t> out;
  at::Tensor ids = at::tensor(prompt, at::kLong).unsqueeze(0);
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    const auto logits = model.forward(ids, &cache).select(1, -1).squeeze(0).to(at::kCPU);  // [V]
    int64_t next = 0;
    if (o.temperature <= 0) {
      next = logits.argmax().item<int64_t>();
    } else {
      auto probs = at::softmax(logits / o.temperature, -1);
      if (o.top_p < 1.0) {
        const auto sorted = probs.sort(-1, /*descending=*/true);
        const auto& p = std::get<0>(sorted);
        const auto& idx = std::get<1>(sorted);
        const auto cum = p.cumsum(-1);
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        const auto drop = (cum - p) >= o.top_p;
        probs = at::zeros_like(probs).scatter(0, idx, p.masked_fill(drop, 0));
      }
      next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    }
    out.push_back(next);
    if (on_token) on_token(next);
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), next) != o.stop_tokens.end()) break;
    ids = at::tensor({next}, at::kLong).unsqueeze(0);
  }
  return out;
}

}  // namespace qjobs::model
