// Perplexity in the GPTQ/AWQ protocol: the text tokenized once with one BOS,
// n = N / seqlen non-overlapping windows (remainder dropped), each window an
// independent forward from position 0, token t+1 predicted from position t
// (seqlen - 1 predictions per window), NLL in float32 accumulated in double,
// ppl = exp(mean NLL over all predictions).
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/ATen.h>

#include "jobs/model/llama_model.hpp"

namespace qjobs::eval {

struct PerplexityOptions {
  int64_t seqlen = 2048;
  int64_t num_samples = -1;  // first N windows; -1 = all
  int64_t batch_size = 1;    // windows per forward
};

struct PerplexityResult {
  double ppl = 0;
  double mean_nll = 0;
  int64_t tokens = 0;  // N, the stream length
  int64_t windows = 0;
  int64_t predictions = 0;  // windows * (seqlen - 1)
  double seconds = 0;
  double tokens_per_s = 0;  // windows * seqlen / seconds
};

// ids: int64 [N] (BOS included by the caller). progress(done, total windows)
// may throw to stop. Throws Error(invalid_input) when N < seqlen. A streamed
// model is run block by block over the windows (each layer onloaded once
// per chunk of windows, not once per window); the numbers are the same.
PerplexityResult perplexity(const model::LlamaModel& model, const at::Tensor& ids, const PerplexityOptions& o,
                            const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace qjobs::eval
