// Trains a LlamaModel with libtorch autograd: next-token cross-entropy,
// AdamW, linear warm-up then cosine decay. Used to make the project's own
// example model; small models on a CPU.
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/ATen.h>

#include "jobs/model/llama_model.hpp"

namespace qjobs::model {

struct TrainOptions {
  int64_t steps = 1000;
  int64_t batch_size = 16;    // sequences per step
  int64_t seqlen = 256;       // tokens per sequence
  double lr = 3e-3;           // peak learning rate
  int64_t warmup = 50;        // steps of linear warm-up
  double weight_decay = 0.1;  // decoupled, on 2-D weights only
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;  // global L2 norm; 0 = off
  uint64_t seed = 0;
};

// Trains `model` in place on random windows of `tokens` (int64 [N]).
// on_step(step, loss) is called after every step.
void train(LlamaModel& model, const at::Tensor& tokens, const TrainOptions& o,
           const std::function<void(int64_t, double)>& on_step);

}  // namespace qjobs::model
