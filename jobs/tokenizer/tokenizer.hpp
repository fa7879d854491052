// Hugging Face tokenizers from tokenizer.json + tokenizer_config.json: BPE
// models (byte-level, as Llama 3 / Qwen / GPT-2 use it, and the
// SentencePiece-style byte-fallback BPE of Llama 2 / Mistral), added and
// special tokens (matched before the model, per their flags), the
// normalizers, pre-tokenizers, post-processors and decoders those files use.
// Written by hand: no Debian package implements the tokenizer.json rules.
// Thread safety: a Tokenizer is immutable after load; encode/decode may run
// concurrently (the word cache is locked).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::tokenizer {

enum class ChatFamily { none, llama3, llama2, chatml };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
  // Throws Error(not_found) or Error(invalid_input) naming the file and the
  // unsupported component.
  static Tokenizer load(const std::filesystem::path& dir);
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const nlohmann::json& config);

  // HF encode(text, add_special_tokens=False): added tokens in the text are
  // matched, nothing is added.
  std::vector<int64_t> encode(std::string_view text) const;
  // HF tokenizer(text): encode, then the post-processor's template (BOS for
  // Llama 2; nothing for a ByteLevel post-processor).
  std::vector<int64_t> encode_with_template(std::string_view text) const;
  // HF decode(ids, skip_special_tokens, clean_up_tokenization_spaces).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false, bool cleanup = false) const;

  std::optional<int64_t> bos_id() const;  // tokenizer_config bos_token
  std::vector<int64_t> eos_ids() const;   // eos_token, and <|eot_id|>/<|im_end|> where they exist
  int64_t vocab_size() const;             // model vocab plus added tokens
  std::optional<int64_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int64_t id) const;
  bool is_special(int64_t id) const;
  bool cleanup_default() const;  // tokenizer_config clean_up_tokenization_spaces

  // The chat format, recognised from tokenizer_config's chat_template.
  ChatFamily chat_family() const;
  // The prompt text for `messages` in that family's format, ending with the
  // assistant header. REQUIRES: chat_family() != none.
  std::string format_chat(const std::vector<ChatMessage>& messages) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// HF clean_up_tokenization: " ." -> "." and the like.
std::string clean_up_tokenization(std::string s);

}  // namespace qjobs::tokenizer
