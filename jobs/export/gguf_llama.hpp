// A Llama-family checkpoint as llama.cpp's GGUF (jobs/export/gguf.hpp):
// the `llama` architecture's metadata keys from config.json, the tokenizer
// from tokenizer.json, and the tensors under llama.cpp's names:
//
//   model.embed_tokens.weight                 token_embd.weight        F32
//   model.layers.N.input_layernorm.weight     blk.N.attn_norm.weight   F32
//   model.layers.N.self_attn.{q,k}_proj       blk.N.attn_{q,k}.weight  rows permuted (below)
//   model.layers.N.self_attn.{v,o}_proj       blk.N.attn_{v,output}.weight
//   model.layers.N.post_attention_layernorm   blk.N.ffn_norm.weight    F32
//   model.layers.N.mlp.{gate,up,down}_proj    blk.N.ffn_{gate,up,down}.weight
//   model.norm.weight                         output_norm.weight       F32
//   lm_head.weight (absent when tied)         output.weight            F32
//
// The decoder Linears are written in `linear_type` (Q8_0, Q4_0, F16 or F32);
// embeddings, norms and the head stay F32, as the quantized model qjobs
// evaluates keeps them. llama.cpp's `llama` graph applies RoPE to adjacent
// pairs, Hugging Face's to halves: q and k rows are reordered per head from
// [half 0 | half 1] to interleaved (row 2i <- i, 2i+1 <- i + d/2), as
// llama.cpp's converter does.
//
// Tokenizers: byte-level BPE (tokenizer.ggml.model "gpt2") with the GPT-2
// pre-tokenizer ("gpt-2") or Llama 3's split pattern ("llama-bpe"). Others
// (SentencePiece) are refused by name.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "jobs/export/gguf.hpp"

namespace qjobs::exporter {

// Returns the float32 weight [out, in] (or [n]) of Hugging Face tensor `name`
// as the exported model holds it (the job's calibrated, dequantized weights).
using WeightSource = std::function<at::Tensor(const std::string& name)>;

// Writes `path`. `config` is config.json, `tokenizer_dir` holds
// tokenizer.json (and tokenizer_config.json). Throws Error(invalid_input)
// for what llama.cpp's llama graph does not hold (rope_scaling other than
// llama3, widths the block type cannot hold), naming it.
void write_llama_gguf(const nlohmann::json& config, const std::filesystem::path& tokenizer_dir,
                      const WeightSource& weight, gguf::TensorType linear_type, const std::string& model_name,
                      const std::filesystem::path& path);

// The Hugging Face tensors of a GGUF file write_llama_gguf wrote (the
// `llama` architecture, F32/F16/Q8_0/Q4_0 tensors), dequantized to float32
// with q/k rows back in Hugging Face's order: what llama.cpp computes with,
// for qjobs' own evaluation of the file. Throws Error(data_corruption) for a
// file that is not such a model, naming what is wrong.
std::vector<std::pair<std::string, at::Tensor>> read_llama_gguf(const std::filesystem::path& path);

// The row order of write_llama_gguf's q/k permutation for one projection:
// result[r] = the Hugging Face row written at GGUF row r.
std::vector<int64_t> rope_interleave_rows(int64_t heads, int64_t head_dim);

}  // namespace qjobs::exporter
