// UTF-8, PCRE2 regular expressions with Oniguruma's conventions (as the
// Rust `tokenizers` library compiles tokenizer.json patterns), ICU
// normalization forms, and the GPT-2 byte-to-unicode table.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qjobs::tokenizer {

// Splits UTF-8 into code points as byte ranges; invalid bytes become
// one-byte pieces.
std::vector<std::string_view> utf8_chars(std::string_view s);
std::string utf8_encode(char32_t cp);

// A compiled pattern. UTF-8 and Unicode properties on; '^' and '$' match at
// line boundaries (Oniguruma's Ruby syntax), '\A' and '\z' at the string's.
class Regex {
 public:
  explicit Regex(const std::string& pattern);  // throws Error(invalid_input)
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  // Byte ranges [begin, end) of all non-overlapping matches, left to right.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view s) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "NFC", "NFD", "NFKC" or "NFKD". Throws Error(invalid_input) for others.
std::string unicode_normalize(std::string_view s, const std::string& form);
std::string unicode_lowercase(std::string_view s);

// GPT-2's reversible map from bytes to printable code points.
const std::vector<std::string>& byte_to_unicode();  // 256 entries, UTF-8
int unicode_to_byte(std::string_view ch);           // -1 when not in the table

}  // namespace qjobs::tokenizer
