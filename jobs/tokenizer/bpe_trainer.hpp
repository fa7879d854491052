// Trains a byte-level BPE tokenizer (GPT-2 split pattern, ByteLevel pre-
// tokenizer and decoder, a TemplateProcessing post-processor adding BOS) and
// writes it as tokenizer.json + tokenizer_config.json in the HF layout.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::tokenizer {

struct BpeTrainOptions {
  int64_t vocab_size = 1024;                                  // special tokens + 256 bytes + merges
  std::vector<std::string> special_tokens = {"<s>", "</s>"};  // ids 0.. in order; first is BOS, second EOS
};

// Learns merges from `texts` (most frequent adjacent pair first; ties broken
// by the pair's bytes, so the result is deterministic) and returns the
// tokenizer.json value.
nlohmann::json train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& o);

// Writes tokenizer.json and a tokenizer_config.json naming BOS/EOS.
void save_tokenizer(const std::filesystem::path& dir, const nlohmann::json& tokenizer_json, const BpeTrainOptions& o);

}  // namespace qjobs::tokenizer
