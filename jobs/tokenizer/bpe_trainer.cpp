#include "jobs/tokenizer/bpe_trainer.hpp"

#include <map>
#include <unordered_map>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/tokenizer/text.hpp"

namespace qjobs::tokenizer {
using nlohmann::json;

namespace {
const char* kGpt2Split = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
}

json train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& o) {
  const int64_t n_special = static_cast<int64_t>(o.special_tokens.size());
  if (o.vocab_size < n_special + 256)
    throw Error(ErrorKind::invalid_input, "vocab_size must cover the special tokens and 256 bytes");
  // Words (as symbol lists in the byte-level alphabet) with their counts.
  const Regex split(kGpt2Split);
  const auto& table = byte_to_unicode();
  std::unordered_map<std::string, int64_t> word_counts;
  for (const auto& t : texts)
    for (const auto& [b, e] : split.find_all(t)) word_counts[t.substr(b, e - b)]++;
  std::vector<std::vector<std::string>> words;
  std::vector<int64_t> counts;
  std::map<std::string, int64_t> sorted(word_counts.begin(), word_counts.end());  // deterministic order
  for (const auto& [w, c] : sorted) {
    std::vector<std::string> syms;
    for (unsigned char ch : w) syms.push_back(table[ch]);
    words.push_back(std::move(syms));
    counts.push_back(c);
  }

  json vocab = json::object();
  int64_t next_id = 0;
  for (const auto& s : o.special_tokens) vocab[s] = next_id++;
  for (int b = 0; b < 256; ++b) vocab[table[static_cast<std::size_t>(b)]] = next_id++;
  json merges = json::array();
  while (next_id < o.vocab_size) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (std::size_t w = 0; w < words.size(); ++w)
      for (std::size_t i = 0; i + 1 < words[w].size(); ++i) pairs[{words[w][i], words[w][i + 1]}] += counts[w];
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;  // std::map order breaks ties
    const auto [a, b] = best->first;
    const std::string merged = a + b;
    merges.push_back(a + " " + b);
    if (!vocab.contains(merged)) vocab[merged] = next_id++;
    for (auto& word : words) {
      std::vector<std::string> out;
      for (std::size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(word[i]);
        }
      }
      word = std::move(out);
    }
  }

  json added = json::array();
  for (int64_t i = 0; i < n_special; ++i)
    added.push_back({{"id", i},
                     {"content", o.special_tokens[static_cast<std::size_t>(i)]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const std::string bos = o.special_tokens.at(0);
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {0}}, {"tokens", {bos}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}},
  };
}

void save_tokenizer(const std::filesystem::path& dir, const json& t, const BpeTrainOptions& o) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / "tokenizer.json", t.dump(1));
  const json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                    {"add_bos_token", true},
                    {"bos_token", o.special_tokens.at(0)},
                    {"eos_token", o.special_tokens.size() > 1 ? o.special_tokens[1] : o.special_tokens[0]},
                    {"clean_up_tokenization_spaces", false},
                    {"model_max_length", 2048}};
  write_file_atomic(dir / "tokenizer_config.json", cfg.dump(2));
}

}  // namespace qjobs::tokenizer
