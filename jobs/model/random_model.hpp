// Writes a Llama-architecture checkpoint (or, with `experts`, a Mixtral one)
// with random weights in the Hugging Face layout (config.json +
// model.safetensors, or shards with an index): what tests, the demo and
// benchmarks use when no trained model is needed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace qjobs::model {

struct RandomModelOptions {
  int64_t hidden = 64;            // hidden_size
  int64_t intermediate = 160;     // intermediate_size
  int64_t layers = 2;             // num_hidden_layers
  int64_t heads = 4;              // num_attention_heads
  int64_t kv_heads = 2;           // num_key_value_heads
  int64_t vocab = 256;            // vocab_size
  bool tie_embeddings = false;    // no lm_head.weight when true
  std::string dtype = "float32";  // float32 | bfloat16 | float16
  uint64_t seed = 0;
  int shards = 1;          // >1 writes model-0000k-of-0000n.safetensors + index
  double init_std = 0.02;  // N(0, init_std) for Linear and Embedding weights
  // > 0: MixtralForCausalLM, each layer's MLP `experts` experts of width
  // `intermediate` (w1, w3, w2) under a router, top_k of them per token.
  int64_t experts = 0;
  int64_t top_k = 2;
};

// Creates `dir` and writes the checkpoint. Throws Error(io).
void write_random_llama(const std::filesystem::path& dir, const RandomModelOptions& o);

}  // namespace qjobs::model
