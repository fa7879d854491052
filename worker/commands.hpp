// Working with a model outside a job: each command prints JSON on stdout and
// returns an exit code (0, or 1 with {"error": ...} on stderr).
#pragma once

#include <cstdint>
#include <string>

#include "common/environment.hpp"

namespace qjobs::worker {

// Compute dtype from a name: "auto"/"float32" -> float32, "bfloat16", "float16".
struct ModelArgs {
  std::string checkpoint;
  std::string dtype = "auto";
  // "fused" (at::scaled_dot_product_attention) or "eager" (the reference path).
  std::string attention = "fused";
  Environment env;  // hub caches (a hub id is resolved as a job's MODEL) and CUDA_VISIBLE_DEVICES
};

// `qjobs-worker --version`: the worker's version, its libtorch (version,
// CUDA runtime) and what CUDA can do here ("usable, 1 device: NVIDIA H200"
// or the reason it cannot), then the same as one JSON line
// (model::runtime_info_json()).
std::string version_text();

int cmd_tokenize(const Environment& env, const std::string& tokenizer_dir, const std::string& text, bool bos);
int cmd_logits(const ModelArgs& m, const std::string& tokens_json, const std::string& out);
int cmd_ppl(const ModelArgs& m, const std::string& data, int64_t seqlen, int64_t num_samples, int64_t batch_size);
// The GEMM rate of the device a job would get ([m, k] x [k, n], `reps` times).
int cmd_gemm(const Environment& env, int64_t m, int64_t n, int64_t k, const std::string& dtype, int reps);
int cmd_demo(const ModelArgs& m, const std::string& prompt, bool raw, int64_t max_new_tokens, double temperature,
             double top_p, uint64_t seed);
// Any checkpoint the project reads (float, fake-quant or packed) as a GGUF
// file for llama.cpp, its decoder Linears in `type` (q8_0, q4_0, f16, f32)
// from the weights as the checkpoint holds them (jobs/export/gguf_llama.hpp);
// with `readback`, also the file's weights read back as a float checkpoint.
// The float ONNX graph of a checkpoint (packed ones unpacked), for
// onnxruntime and the device compilers.
int cmd_onnx(const Environment& env, const std::string& checkpoint, const std::string& out, int64_t seq_len,
             int64_t context_len);
int cmd_gguf(const Environment& env, const std::string& checkpoint, const std::string& type, const std::string& out,
             const std::string& readback, const std::string& name);

}  // namespace qjobs::worker

namespace qjobs::worker {

// Trains a byte-level BPE tokenizer on a data file's rows and writes it to `out`.
int cmd_train_tokenizer(const std::string& data, int64_t vocab_size, const std::string& out);

struct TrainArgs {
  std::string data;       // training rows (.jsonl/.json/.txt)
  std::string eval_data;  // held-out rows for the final perplexity ("" = none)
  std::string tokenizer;  // folder with tokenizer.json
  std::string out;        // checkpoint folder to write
  int64_t hidden = 128, intermediate = 352, layers = 4, heads = 4, kv_heads = 2;
  int64_t steps = 1000, batch_size = 16, seqlen = 256;
  double lr = 3e-3;
  uint64_t seed = 0;
};

// Trains a Llama model from scratch and writes it in the HF layout with the
// tokenizer; prints the training summary (loss, held-out and unigram ppl).
int cmd_train(const TrainArgs& a);

}  // namespace qjobs::worker
