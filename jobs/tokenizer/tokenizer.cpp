#include "jobs/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "common/error.hpp"
#include "jobs/tokenizer/text.hpp"

namespace qjobs::tokenizer {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void unsupported(const std::string& what, const json& j) {
  throw Error(ErrorKind::invalid_input, "tokenizer.json: unsupported " + what + " " + j.value("type", j.dump()));
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const auto hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos);
  return out;
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes U+FFFD.
std::string utf8_lossy(const std::string& b) {
  std::string out;
  std::size_t i = 0;
  const auto cont = [&](std::size_t k) { return k < b.size() && (static_cast<unsigned char>(b[k]) & 0xc0) == 0x80; };
  while (i < b.size()) {
    const auto c = static_cast<unsigned char>(b[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c == 0xe0) {
      need = 2;
      lo = 0xa0;
    } else if (c >= 0xe1 && c <= 0xec) need = 2;
    else if (c == 0xed) {
      need = 2;
      hi = 0x9f;
    } else if (c >= 0xee && c <= 0xef) need = 2;
    else if (c == 0xf0) {
      need = 3;
      lo = 0x90;
    } else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c == 0xf4) {
      need = 3;
      hi = 0x8f;
    }
    if (need == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    std::size_t k = 1;
    bool ok = true;
    for (; k <= need; ++k) {
      if (!cont(i + k)) {
        ok = false;
        break;
      }
      const auto d = static_cast<unsigned char>(b[i + k]);
      if (k == 1 && (d < lo || d > hi)) {
        ok = false;
        break;
      }
    }
    if (ok) {
      out.append(b, i, need + 1);
      i += need + 1;
    } else {
      out += "\xEF\xBF\xBD";
      i += k;  // the valid prefix of the sequence is one replacement
    }
  }
  return out;
}

bool is_space_char(std::string_view ch) {
  static const char* spaces[] = {" ", "\t", "\n", "\r", "\v", "\f", "\xC2\xA0", "\xE2\x80\x80", "\xE3\x80\x80"};
  for (const char* s : spaces)
    if (ch == s) return true;
  return false;
}

// ---------------------------------------------------------------- pattern

struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex;
  static Pattern from(const json& p) {
    Pattern out;
    if (p.contains("String")) out.literal = p["String"].get<std::string>();
    else if (p.contains("Regex")) out.regex = std::make_shared<Regex>(p["Regex"].get<std::string>());
    else throw Error(ErrorKind::invalid_input, "tokenizer.json: pattern without String or Regex");
    return out;
  }
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view s) const {
    if (regex) return regex->find_all(s);
    std::vector<std::pair<std::size_t, std::size_t>> out;
    if (literal.empty()) return out;
    std::size_t pos = 0;
    while ((pos = s.find(literal, pos)) != std::string_view::npos) {
      out.emplace_back(pos, pos + literal.size());
      pos += literal.size();
    }
    return out;
  }
};

// ---------------------------------------------------------------- normalizers

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string s) const = 0;
};
using NormalizerPtr = std::unique_ptr<Normalizer>;

struct SequenceNormalizer : Normalizer {
  std::vector<NormalizerPtr> parts;
  std::string normalize(std::string s) const override {
    for (const auto& p : parts) s = p->normalize(std::move(s));
    return s;
  }
};

struct PrependNormalizer : Normalizer {
  std::string prefix;
  std::string normalize(std::string s) const override { return s.empty() ? s : prefix + s; }
};

struct ReplaceNormalizer : Normalizer {
  Pattern pattern;
  std::string content;
  std::string normalize(std::string s) const override {
    std::string out;
    std::size_t pos = 0;
    for (const auto& [b, e] : pattern.find_all(s)) {
      out.append(s, pos, b - pos);
      out += content;
      pos = e;
    }
    out.append(s, pos);
    return out;
  }
};

struct UnicodeNormalizer : Normalizer {
  std::string form;
  std::string normalize(std::string s) const override { return unicode_normalize(s, form); }
};

struct LowercaseNormalizer : Normalizer {
  std::string normalize(std::string s) const override { return unicode_lowercase(s); }
};

struct StripNormalizer : Normalizer {
  bool left = true, right = true;
  std::string normalize(std::string s) const override {
    auto chars = utf8_chars(s);
    std::size_t b = 0, e = chars.size();
    if (left)
      while (b < e && is_space_char(chars[b])) ++b;
    if (right)
      while (e > b && is_space_char(chars[e - 1])) --e;
    std::string out;
    for (std::size_t i = b; i < e; ++i) out += chars[i];
    return out;
  }
};

NormalizerPtr make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceNormalizer>();
    for (const auto& n : j["normalizers"]) s->parts.push_back(make_normalizer(n));
    return s;
  }
  if (type == "Prepend") {
    auto p = std::make_unique<PrependNormalizer>();
    p->prefix = j["prepend"].get<std::string>();
    return p;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceNormalizer>();
    r->pattern = Pattern::from(j["pattern"]);
    r->content = j["content"].get<std::string>();
    return r;
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    auto u = std::make_unique<UnicodeNormalizer>();
    u->form = type;
    return u;
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    auto s = std::make_unique<StripNormalizer>();
    s->left = j.value("strip_left", true);
    s->right = j.value("strip_right", true);
    return s;
  }
  unsupported("normalizer", j);
}

// ---------------------------------------------------------------- pre-tokenizers

// A piece of text on its way to the model, and whether it starts the input.
struct Piece {
  std::string text;
  bool at_start = false;
};

struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  virtual std::vector<Piece> split(std::vector<Piece> pieces) const = 0;
};
using PreTokenizerPtr = std::unique_ptr<PreTokenizer>;

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Splits each piece at the matches of `pattern` (or of its complement when
// inverted), keeping matches by `behavior`.
std::vector<Piece> split_by(const std::vector<Piece>& in, const Pattern& pattern, SplitBehavior behavior, bool invert) {
  std::vector<Piece> out;
  for (const auto& piece : in) {
    const std::string& s = piece.text;
    // (begin, end, is_match) segments covering s.
    std::vector<std::tuple<std::size_t, std::size_t, bool>> segs;
    std::size_t pos = 0;
    for (const auto& [b, e] : pattern.find_all(s)) {
      if (b > pos) segs.emplace_back(pos, b, false);
      segs.emplace_back(b, e, true);
      pos = e;
    }
    if (pos < s.size()) segs.emplace_back(pos, s.size(), false);
    if (invert)
      for (auto& seg : segs) std::get<2>(seg) = !std::get<2>(seg);
    std::vector<std::pair<std::size_t, std::size_t>> parts;
    switch (behavior) {
      case SplitBehavior::removed:
        for (const auto& [b, e, m] : segs)
          if (!m) parts.emplace_back(b, e);
        break;
      case SplitBehavior::isolated:
        for (const auto& [b, e, m] : segs) parts.emplace_back(b, e);
        break;
      case SplitBehavior::merged_with_previous: {
        for (const auto& [b, e, m] : segs) {
          if (m && !parts.empty()) parts.back().second = e;
          else parts.emplace_back(b, e);
        }
        break;
      }
      case SplitBehavior::merged_with_next: {
        bool pending = false;
        for (const auto& [b, e, m] : segs) {
          if (pending) {
            parts.back().second = e;
            pending = m;
          } else {
            parts.emplace_back(b, e);
            pending = m;
          }
        }
        break;
      }
      case SplitBehavior::contiguous: {
        bool last_match = false;
        for (const auto& [b, e, m] : segs) {
          if (!parts.empty() && m && last_match) parts.back().second = e;
          else parts.emplace_back(b, e);
          last_match = m;
        }
        break;
      }
    }
    bool first = true;
    for (const auto& [b, e] : parts) {
      if (e <= b) continue;
      out.push_back({s.substr(b, e - b), piece.at_start && first && b == 0});
      first = false;
    }
  }
  return out;
}

SplitBehavior parse_behavior(const std::string& b) {
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  throw Error(ErrorKind::invalid_input, "tokenizer.json: unknown split behavior " + b);
}

struct SequencePreTokenizer : PreTokenizer {
  std::vector<PreTokenizerPtr> parts;
  std::vector<Piece> split(std::vector<Piece> p) const override {
    for (const auto& part : parts) p = part->split(std::move(p));
    return p;
  }
};

struct SplitPreTokenizer : PreTokenizer {
  Pattern pattern;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  std::vector<Piece> split(std::vector<Piece> p) const override { return split_by(p, pattern, behavior, invert); }
};

const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct ByteLevelPreTokenizer : PreTokenizer {
  bool add_prefix_space = false;
  bool use_regex = true;
  Pattern gpt2;
  ByteLevelPreTokenizer() { gpt2.regex = std::make_shared<Regex>(kGpt2Pattern); }
  std::vector<Piece> split(std::vector<Piece> p) const override {
    if (add_prefix_space)
      for (auto& piece : p)
        if (piece.text.empty() || piece.text[0] != ' ') piece.text = " " + piece.text;
    if (use_regex) p = split_by(p, gpt2, SplitBehavior::isolated, false);
    const auto& table = byte_to_unicode();
    for (auto& piece : p) {
      std::string mapped;
      for (unsigned char c : piece.text) mapped += table[c];
      piece.text = std::move(mapped);
    }
    return p;
  }
};

struct MetaspacePreTokenizer : PreTokenizer {
  std::string replacement = "\xE2\x96\x81";
  std::string prepend_scheme = "always";  // always | first | never
  bool split_pieces = true;
  std::vector<Piece> split(std::vector<Piece> p) const override {
    for (auto& piece : p) {
      piece.text = replace_all(piece.text, " ", replacement);
      const bool prepend = prepend_scheme == "always" || (prepend_scheme == "first" && piece.at_start);
      if (prepend && piece.text.rfind(replacement, 0) != 0) piece.text = replacement + piece.text;
    }
    if (!split_pieces) return p;
    Pattern pat;
    pat.literal = replacement;
    return split_by(p, pat, SplitBehavior::merged_with_next, false);
  }
};

struct DigitsPreTokenizer : PreTokenizer {
  Pattern pattern;
  DigitsPreTokenizer(bool individual) {
    pattern.regex = std::make_shared<Regex>(individual ? R"(\p{N})" : R"(\p{N}+)");
  }
  std::vector<Piece> split(std::vector<Piece> p) const override {
    return split_by(p, pattern, SplitBehavior::isolated, false);
  }
};

struct WhitespacePreTokenizer : PreTokenizer {
  Pattern pattern;
  explicit WhitespacePreTokenizer(bool split_only) {
    pattern.regex = std::make_shared<Regex>(split_only ? R"(\S+)" : R"(\w+|[^\w\s]+)");
  }
  std::vector<Piece> split(std::vector<Piece> p) const override {
    return split_by(p, pattern, SplitBehavior::removed, true);
  }
};

PreTokenizerPtr make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequencePreTokenizer>();
    for (const auto& p : j["pretokenizers"]) s->parts.push_back(make_pre_tokenizer(p));
    return s;
  }
  if (type == "Split") {
    auto s = std::make_unique<SplitPreTokenizer>();
    s->pattern = Pattern::from(j["pattern"]);
    s->behavior = parse_behavior(j.value("behavior", "Isolated"));
    s->invert = j.value("invert", false);
    return s;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelPreTokenizer>();
    b->add_prefix_space = j.value("add_prefix_space", false);
    b->use_regex = j.value("use_regex", true);
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspacePreTokenizer>();
    m->replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    if (j.contains("prepend_scheme")) m->prepend_scheme = j["prepend_scheme"].get<std::string>();
    else m->prepend_scheme = j.value("add_prefix_space", true) ? "always" : "never";
    m->split_pieces = j.value("split", true);
    return m;
  }
  if (type == "Digits") return std::make_unique<DigitsPreTokenizer>(j.value("individual_digits", false));
  if (type == "Whitespace") return std::make_unique<WhitespacePreTokenizer>(false);
  if (type == "WhitespaceSplit") return std::make_unique<WhitespacePreTokenizer>(true);
  unsupported("pre_tokenizer", j);
}

// ---------------------------------------------------------------- decoders

struct Decoder {
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
using DecoderPtr = std::unique_ptr<Decoder>;

struct SequenceDecoder : Decoder {
  std::vector<DecoderPtr> parts;
  void decode_chain(std::vector<std::string>& t) const override {
    for (const auto& p : parts) p->decode_chain(t);
  }
};

struct ReplaceDecoder : Decoder {
  ReplaceNormalizer replace;
  void decode_chain(std::vector<std::string>& t) const override {
    for (auto& s : t) s = replace.normalize(std::move(s));
  }
};

std::optional<int> byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  unsigned v = 0;
  if (std::sscanf(t.c_str() + 3, "%2X", &v) != 1) return std::nullopt;
  return static_cast<int>(v);
}

struct ByteFallbackDecoder : Decoder {
  void decode_chain(std::vector<std::string>& t) const override {
    std::vector<std::string> out;
    std::string bytes;
    std::size_t count = 0;
    const auto flush = [&] {
      if (count == 0) return;
      const std::string lossy = utf8_lossy(bytes);
      if (lossy == bytes) out.push_back(bytes);
      else
        for (std::size_t i = 0; i < count; ++i) out.push_back("\xEF\xBF\xBD");
      bytes.clear();
      count = 0;
    };
    for (auto& s : t) {
      if (const auto b = byte_token(s)) {
        bytes.push_back(static_cast<char>(*b));
        ++count;
      } else {
        flush();
        out.push_back(std::move(s));
      }
    }
    flush();
    t = std::move(out);
  }
};

struct FuseDecoder : Decoder {
  void decode_chain(std::vector<std::string>& t) const override {
    std::string all;
    for (const auto& s : t) all += s;
    t = {all};
  }
};

struct StripDecoder : Decoder {
  std::string content = " ";
  int start = 0, stop = 0;
  void decode_chain(std::vector<std::string>& t) const override {
    for (auto& s : t) {
      auto chars = utf8_chars(s);
      std::size_t b = 0, e = chars.size();
      for (int i = 0; i < start && b < e && chars[b] == content; ++i) ++b;
      for (int i = 0; i < stop && e > b && chars[e - 1] == content; ++i) --e;
      std::string out;
      for (std::size_t i = b; i < e; ++i) out += chars[i];
      s = out;
    }
  }
};

struct ByteLevelDecoder : Decoder {
  void decode_chain(std::vector<std::string>& t) const override {
    std::string bytes;
    for (const auto& s : t) {
      std::string tb;
      bool ok = true;
      for (auto ch : utf8_chars(s)) {
        const int b = unicode_to_byte(ch);
        if (b < 0) {
          ok = false;
          break;
        }
        tb.push_back(static_cast<char>(b));
      }
      bytes += ok ? tb : s;
    }
    t = {utf8_lossy(bytes)};
  }
};

struct MetaspaceDecoder : Decoder {
  std::string replacement = "\xE2\x96\x81";
  bool prepend = true;
  void decode_chain(std::vector<std::string>& t) const override {
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = replace_all(t[i], replacement, " ");
      if (i == 0 && prepend && !t[i].empty() && t[i][0] == ' ') t[i].erase(0, 1);
    }
  }
};

DecoderPtr make_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto s = std::make_unique<SequenceDecoder>();
    for (const auto& d : j["decoders"]) s->parts.push_back(make_decoder(d));
    return s;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceDecoder>();
    r->replace.pattern = Pattern::from(j["pattern"]);
    r->replace.content = j["content"].get<std::string>();
    return r;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = j.value("content", std::string(" "));
    s->start = j.value("start", 0);
    s->stop = j.value("stop", 0);
    return s;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    m->prepend = j.contains("prepend_scheme") ? j["prepend_scheme"] != "never" : j.value("add_prefix_space", true);
    return m;
  }
  unsupported("decoder", j);
}

// ---------------------------------------------------------------- BPE model

class Bpe {
 public:
  void load(const json& m) {
    if (m.value("type", "BPE") != "BPE") unsupported("model", m);
    if (!m.value("continuing_subword_prefix", json()).is_null() || !m.value("end_of_word_suffix", json()).is_null())
      throw Error(ErrorKind::invalid_input,
                  "tokenizer.json: BPE continuing_subword_prefix/end_of_word_suffix are not supported");
    for (auto& [tok, id] : m["vocab"].items()) {
      vocab_[tok] = id.get<int64_t>();
      max_id_ = std::max(max_id_, id.get<int64_t>());
    }
    id_to_token_.assign(static_cast<std::size_t>(max_id_ + 1), "");
    for (const auto& [tok, id] : vocab_) id_to_token_[static_cast<std::size_t>(id)] = tok;
    int64_t rank = 0;
    for (const auto& mg : m["merges"]) {
      std::string a, b;
      if (mg.is_array()) {
        a = mg[0].get<std::string>();
        b = mg[1].get<std::string>();
      } else {
        const auto s = mg.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos) throw Error(ErrorKind::invalid_input, "tokenizer.json: bad merge '" + s + "'");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end())
        throw Error(ErrorKind::invalid_input,
                    "tokenizer.json: merge '" + a + " " + b + "' uses tokens not in the vocab");
      merges_.emplace(key(ia->second, ib->second), std::make_pair(rank++, ic->second));
    }
    byte_fallback_ = m.value("byte_fallback", false);
    fuse_unk_ = m.value("fuse_unk", false);
    ignore_merges_ = m.value("ignore_merges", false);
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      const auto it = vocab_.find(m["unk_token"].get<std::string>());
      if (it != vocab_.end()) unk_ = it->second;
    }
  }

  void tokenize(const std::string& word, std::vector<int64_t>& out) const {
    if (word.empty()) return;
    const bool cacheable = word.size() <= 256;
    if (cacheable) {
      std::lock_guard lock(cache_mu_);
      const auto it = cache_.find(word);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int64_t> ids;
    if (ignore_merges_) {
      const auto it = vocab_.find(word);
      if (it != vocab_.end()) ids.push_back(it->second);
    }
    if (ids.empty()) ids = merge_word(word);
    if (cacheable) {
      std::lock_guard lock(cache_mu_);
      if (cache_.size() > 200000) cache_.clear();
      cache_.emplace(word, ids);
    }
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::optional<int64_t> find(std::string_view t) const {
    const auto it = vocab_.find(std::string(t));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> token(int64_t id) const {
    if (id < 0 || id > max_id_ || id_to_token_[static_cast<std::size_t>(id)].empty()) return std::nullopt;
    return id_to_token_[static_cast<std::size_t>(id)];
  }
  int64_t size() const { return max_id_ + 1; }

 private:
  static uint64_t key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

  std::vector<int64_t> merge_word(const std::string& word) const {
    struct Sym {
      int64_t id;
      int prev, next;
      bool alive;
    };
    std::vector<Sym> syms;
    syms.reserve(word.size());
    bool last_unk = false;
    for (const auto ch : utf8_chars(word)) {
      const auto it = vocab_.find(std::string(ch));
      if (it != vocab_.end()) {
        syms.push_back({it->second, 0, 0, true});
        last_unk = false;
        continue;
      }
      if (byte_fallback_) {
        std::vector<int64_t> bytes;
        for (unsigned char c : ch) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "<0x%02X>", c);
          const auto b = vocab_.find(buf);
          if (b == vocab_.end()) {
            bytes.clear();
            break;
          }
          bytes.push_back(b->second);
        }
        if (!bytes.empty()) {
          for (auto b : bytes) syms.push_back({b, 0, 0, true});
          last_unk = false;
          continue;
        }
      }
      if (!unk_) throw Error(ErrorKind::invalid_input, "tokenizer: character not in the vocab and no unk_token");
      if (fuse_unk_ && last_unk) continue;
      syms.push_back({*unk_, 0, 0, true});
      last_unk = true;
    }
    const int n = static_cast<int>(syms.size());
    for (int i = 0; i < n; ++i) {
      syms[static_cast<std::size_t>(i)].prev = i - 1;
      syms[static_cast<std::size_t>(i)].next = i + 1 < n ? i + 1 : -1;
    }
    struct Cand {
      int64_t rank;
      int pos;
      int64_t new_id;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    const auto push = [&](int pos) {
      if (pos < 0) return;
      const int nx = syms[static_cast<std::size_t>(pos)].next;
      if (nx < 0) return;
      const auto it = merges_.find(key(syms[static_cast<std::size_t>(pos)].id, syms[static_cast<std::size_t>(nx)].id));
      if (it != merges_.end()) heap.push({it->second.first, pos, it->second.second});
    };
    for (int i = 0; i < n; ++i) push(i);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      Sym& s = syms[static_cast<std::size_t>(c.pos)];
      if (!s.alive || s.next < 0) continue;
      Sym& nx = syms[static_cast<std::size_t>(s.next)];
      const auto it = merges_.find(key(s.id, nx.id));
      if (it == merges_.end() || it->second.second != c.new_id) continue;  // stale
      s.id = c.new_id;
      nx.alive = false;
      s.next = nx.next;
      if (s.next >= 0) syms[static_cast<std::size_t>(s.next)].prev = c.pos;
      push(s.prev);
      push(c.pos);
    }
    std::vector<int64_t> ids;
    for (int i = n > 0 ? 0 : -1; i >= 0; i = syms[static_cast<std::size_t>(i)].next)
      ids.push_back(syms[static_cast<std::size_t>(i)].id);
    return ids;
  }

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  int64_t max_id_ = -1;
  std::unordered_map<uint64_t, std::pair<int64_t, int64_t>> merges_;  // (a,b) -> (rank, merged id)
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::optional<int64_t> unk_;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A section of the input: text still to tokenize, or an added token.
struct Section {
  std::string text;
  int64_t token = -1;
  bool at_start = false;
};

bool is_word_char(std::string_view ch) {
  if (ch.size() > 1) return true;  // non-ASCII letters count as word characters
  const unsigned char c = static_cast<unsigned char>(ch[0]);
  return std::isalnum(c) || c == '_';
}

}  // namespace

struct Tokenizer::Impl {
  Bpe model;
  NormalizerPtr normalizer;
  PreTokenizerPtr pre_tokenizer;
  DecoderPtr decoder;
  std::vector<AddedToken> added;
  std::unordered_map<int64_t, std::size_t> added_by_id;
  std::array<bool, 256> added_first_byte{};  // bytes an added token can start with
  // Template: ids before and after the sequence.
  std::vector<int64_t> template_prefix, template_suffix;
  std::optional<int64_t> bos, eos;
  std::vector<int64_t> extra_eos;
  bool cleanup = false;
  ChatFamily chat = ChatFamily::none;

  // Splits `text` on the added tokens whose `normalized` flag equals
  // `normalized`, leftmost-longest.
  std::vector<Section> split_added(const std::string& text, bool normalized, bool at_start) const {
    std::vector<Section> out;
    std::size_t pos = 0, emitted = 0;
    while (pos < text.size()) {
      if (!added_first_byte[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      const AddedToken* best = nullptr;
      for (const auto& t : added) {
        if (t.normalized != normalized || t.content.empty()) continue;
        if (text.compare(pos, t.content.size(), t.content) != 0) continue;
        if (best && t.content.size() <= best->content.size()) continue;
        if (t.single_word) {
          const auto before = pos == 0 ? std::string_view() : utf8_chars(std::string_view(text).substr(0, pos)).back();
          const auto after_pos = pos + t.content.size();
          const auto after = after_pos >= text.size() ? std::string_view()
                                                      : utf8_chars(std::string_view(text).substr(after_pos)).front();
          if ((!before.empty() && is_word_char(before)) || (!after.empty() && is_word_char(after))) continue;
        }
        best = &t;
      }
      if (!best) {
        ++pos;
        continue;
      }
      std::size_t b = pos, e = pos + best->content.size();
      if (best->lstrip)
        while (b > emitted && std::isspace(static_cast<unsigned char>(text[b - 1]))) --b;
      if (best->rstrip)
        while (e < text.size() && std::isspace(static_cast<unsigned char>(text[e]))) ++e;
      if (b > emitted) out.push_back({text.substr(emitted, b - emitted), -1, at_start && emitted == 0});
      out.push_back({"", best->id, false});
      emitted = pos = e;
    }
    if (emitted < text.size()) out.push_back({text.substr(emitted), -1, at_start && emitted == 0});
    return out;
  }

  void encode_into(const std::string& text, std::vector<int64_t>& ids) const {
    for (const auto& sec : split_added(text, false, true)) {
      if (sec.token >= 0) {
        ids.push_back(sec.token);
        continue;
      }
      const std::string norm = normalizer ? normalizer->normalize(sec.text) : sec.text;
      for (const auto& sub : split_added(norm, true, sec.at_start)) {
        if (sub.token >= 0) {
          ids.push_back(sub.token);
          continue;
        }
        std::vector<Piece> pieces = {{sub.text, sub.at_start}};
        if (pre_tokenizer) pieces = pre_tokenizer->split(std::move(pieces));
        for (const auto& p : pieces) model.tokenize(p.text, ids);
      }
    }
  }

  std::optional<int64_t> lookup(std::string_view t) const {
    for (const auto& a : added)
      if (a.content == t) return a.id;
    return model.find(t);
  }
};

namespace {

std::string token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return "";
}

}  // namespace

Tokenizer Tokenizer::load(const fs::path& dir) {
  const fs::path tj = dir / "tokenizer.json";
  std::ifstream in(tj);
  if (!in)
    throw Error(ErrorKind::not_found, "missing " + tj.string() + " (only tokenizer.json tokenizers are supported)");
  json t = json::parse(in, nullptr, false);
  if (t.is_discarded()) throw Error(ErrorKind::data_corruption, tj.string() + " is not valid JSON");
  json cfg = json::object();
  if (std::ifstream c(dir / "tokenizer_config.json"); c) {
    cfg = json::parse(c, nullptr, false);
    if (cfg.is_discarded())
      throw Error(ErrorKind::data_corruption, (dir / "tokenizer_config.json").string() + " is not valid JSON");
  }
  try {
    return from_json(t, cfg);
  } catch (const Error& e) {
    rethrow_with_stage(e, tj.string());
  } catch (const json::exception& e) {
    throw Error(ErrorKind::invalid_input, tj.string() + ": " + e.what());
  }
}

Tokenizer Tokenizer::from_json(const json& t, const json& cfg) {
  auto impl = std::make_shared<Impl>();
  impl->model.load(t.at("model"));
  impl->normalizer = make_normalizer(t.value("normalizer", json()));
  impl->pre_tokenizer = make_pre_tokenizer(t.value("pre_tokenizer", json()));
  impl->decoder = make_decoder(t.value("decoder", json()));
  for (const auto& a : t.value("added_tokens", json::array())) {
    AddedToken tok;
    tok.id = a.at("id").get<int64_t>();
    tok.content = a.at("content").get<std::string>();
    tok.single_word = a.value("single_word", false);
    tok.lstrip = a.value("lstrip", false);
    tok.rstrip = a.value("rstrip", false);
    tok.normalized = a.value("normalized", false);
    tok.special = a.value("special", false);
    impl->added_by_id[tok.id] = impl->added.size();
    if (!tok.content.empty()) impl->added_first_byte[static_cast<unsigned char>(tok.content[0])] = true;
    impl->added.push_back(tok);
  }
  const json post = t.value("post_processor", json());
  const std::function<void(const json&)> read_post = [&](const json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& x : p["processors"]) read_post(x);
    } else if (type == "TemplateProcessing") {
      bool seen_a = false;
      for (const auto& item : p["single"]) {
        if (item.contains("Sequence")) {
          seen_a = true;
          continue;
        }
        const std::string name = item["SpecialToken"]["id"].get<std::string>();
        std::vector<int64_t> ids = p["special_tokens"][name]["ids"].get<std::vector<int64_t>>();
        auto& dst = seen_a ? impl->template_suffix : impl->template_prefix;
        dst.insert(dst.end(), ids.begin(), ids.end());
      }
    } else if (type != "ByteLevel") {
      unsupported("post_processor", p);
    }
  };
  read_post(post);

  if (cfg.contains("bos_token")) impl->bos = impl->lookup(token_content(cfg["bos_token"]));
  if (cfg.contains("eos_token")) impl->eos = impl->lookup(token_content(cfg["eos_token"]));
  for (const char* e : {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>"})
    if (auto id = impl->lookup(e); id && id != impl->eos) impl->extra_eos.push_back(*id);
  impl->cleanup = cfg.value("clean_up_tokenization_spaces", false);
  const std::string chat =
      cfg.contains("chat_template") && cfg["chat_template"].is_string() ? cfg["chat_template"].get<std::string>() : "";
  if (chat.find("<|start_header_id|>") != std::string::npos) impl->chat = ChatFamily::llama3;
  else if (chat.find("<|im_start|>") != std::string::npos) impl->chat = ChatFamily::chatml;
  else if (chat.find("[INST]") != std::string::npos) impl->chat = ChatFamily::llama2;
  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

std::vector<int64_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids;
  impl_->encode_into(std::string(text), ids);
  return ids;
}

std::vector<int64_t> Tokenizer::encode_with_template(std::string_view text) const {
  std::vector<int64_t> ids = impl_->template_prefix;
  impl_->encode_into(std::string(text), ids);
  ids.insert(ids.end(), impl_->template_suffix.begin(), impl_->template_suffix.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special, bool cleanup) const {
  std::vector<std::string> tokens;
  for (const auto id : ids) {
    const auto a = impl_->added_by_id.find(id);
    if (a != impl_->added_by_id.end()) {
      const auto& t = impl_->added[a->second];
      if (skip_special && t.special) continue;
      tokens.push_back(t.content);
      continue;
    }
    if (auto t = impl_->model.token(id)) tokens.push_back(*t);
  }
  if (impl_->decoder) impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return cleanup ? clean_up_tokenization(std::move(out)) : out;
}

std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }

std::vector<int64_t> Tokenizer::eos_ids() const {
  std::vector<int64_t> out;
  if (impl_->eos) out.push_back(*impl_->eos);
  out.insert(out.end(), impl_->extra_eos.begin(), impl_->extra_eos.end());
  return out;
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->model.size();
  for (const auto& a : impl_->added) n = std::max(n, a.id + 1);
  return n;
}

std::optional<int64_t> Tokenizer::token_to_id(std::string_view token) const { return impl_->lookup(token); }

std::string Tokenizer::id_to_token(int64_t id) const {
  const auto a = impl_->added_by_id.find(id);
  if (a != impl_->added_by_id.end()) return impl_->added[a->second].content;
  return impl_->model.token(id).value_or("");
}

bool Tokenizer::is_special(int64_t id) const {
  const auto a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

bool Tokenizer::cleanup_default() const { return impl_->cleanup; }

ChatFamily Tokenizer::chat_family() const { return impl_->chat; }

std::string Tokenizer::format_chat(const std::vector<ChatMessage>& messages) const {
  std::string out;
  switch (impl_->chat) {
    case ChatFamily::llama3:
      out = "<|begin_of_text|>";
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
      return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case ChatFamily::chatml:
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      return out + "<|im_start|>assistant\n";
    case ChatFamily::llama2: {
      std::string system;
      for (const auto& m : messages) {
        if (m.role == "system") {
          system = m.content;
        } else if (m.role == "user") {
          std::string content = m.content;
          if (!system.empty()) {
            content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
            system.clear();
          }
          out += "<s>[INST] " + content + " [/INST]";
        } else {
          out += " " + m.content + " </s>";
        }
      }
      return out;
    }
    case ChatFamily::none:
      break;
  }
  throw Error(ErrorKind::invalid_input, "this tokenizer has no chat template; use raw mode");
}

std::string clean_up_tokenization(std::string s) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{{" .", "."},
                                                                                 {" ?", "?"},
                                                                                 {" !", "!"},
                                                                                 {" ,", ","},
                                                                                 {" ' ", "'"},
                                                                                 {" n't", "n't"},
                                                                                 {" 'm", "'m"},
                                                                                 {" 's", "'s"},
                                                                                 {" 've", "'ve"},
                                                                                 {" 're", "'re"}})
    s = replace_all(std::move(s), from, to);
  return s;
}

}  // namespace qjobs::tokenizer
