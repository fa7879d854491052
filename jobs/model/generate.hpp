// Text generation with a KV cache: greedy, or sampling with temperature and
// top-p, up to max_new_tokens or a stop token.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "jobs/model/llama_model.hpp"

namespace qjobs::model {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;          // 0: greedy (argmax)
  double top_p = 1.0;                // nucleus mass kept when sampling, (0, 1]
  uint64_t seed = 0;                 // sampling seed
  std::vector<int64_t> stop_tokens;  // generation ends after emitting one of these
};

// Returns the new token ids (the prompt is not included).
// REQUIRES: prompt is non-empty.
std::vector<int64_t> generate(const LlamaModel& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int64_t token)>& on_token = {});

}  // namespace qjobs::model
