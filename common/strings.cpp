#include "common/strings.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace qjobs {

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::size_t edit_distance(std::string_view a_in, std::string_view b_in, std::size_t limit) {
  std::string a = to_lower(a_in), b = to_lower(b_in);
  if (a.size() > b.size()) std::swap(a, b);  // a is the shorter
  if (b.size() - a.size() > limit) return limit + 1;
  const std::size_t over = limit + 1;
  // Row i holds distances for j in [i - limit, i + limit]; cells outside the
  // band are "over".
  std::vector<std::size_t> prev(b.size() + 1, over), cur(b.size() + 1, over);
  for (std::size_t j = 0; j <= std::min(b.size(), limit); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    const std::size_t lo = i > limit ? i - limit : 0;
    const std::size_t hi = std::min(b.size(), i + limit);
    // Only the band and its two neighbours are read in the next row.
    if (lo > 0) cur[lo - 1] = over;
    if (hi + 1 <= b.size()) cur[hi + 1] = over;
    if (lo == 0) cur[0] = i;
    if (lo > 0) cur[lo] = over;  // recomputed below when lo >= 1
    std::size_t row_min = over;
    for (std::size_t j = std::max<std::size_t>(lo, 1); j <= hi; ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub, over});
      row_min = std::min(row_min, cur[j]);
    }
    if (lo == 0) row_min = std::min(row_min, cur[0]);
    if (row_min > limit) return over;
    std::swap(prev, cur);
  }
  return std::min(prev[b.size()], over);
}

std::optional<std::string> closest_name(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.size() > kMaxSuggestLength) return std::nullopt;
  const auto lower = [](std::string_view s) {
    std::string out(s);
    for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
  };
  const std::string lw = lower(word);
  // The same name in another case (w_bit: W_BIT), then the one name that
  // contains the word (AWQ: AutoAWQ, not HQQ at distance 1).
  for (const auto& c : candidates)
    if (c.size() == word.size() && lower(c) == lw) return c;
  if (word.size() >= 3) {
    std::optional<std::string> containing;
    int hits = 0;
    for (const auto& c : candidates)
      if (c.size() <= kMaxSuggestLength && lower(c).find(lw) != std::string::npos) containing = c, ++hits;
    if (hits == 1) return containing;
  }
  std::optional<std::string> best;
  const std::size_t allowed = std::max<std::size_t>(2, word.size() / 3);
  std::size_t best_d = allowed + 1;
  for (const auto& c : candidates) {
    const std::size_t diff = c.size() > word.size() ? c.size() - word.size() : word.size() - c.size();
    if (diff > allowed) continue;
    const auto d = edit_distance(word, c, allowed);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

bool valid_utf8(std::string_view s, std::size_t* bad_offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  const auto fail = [&] {
    if (bad_offset) *bad_offset = i;
    return false;
  };
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return fail();
    if (i + len > n) return fail();
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return fail();
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return fail();
    i += len;
  }
  return true;
}

std::string weight_stem(std::string_view tensor_name) {
  constexpr std::string_view kSuffix = ".weight";
  if (tensor_name.size() <= kSuffix.size() || !tensor_name.ends_with(kSuffix)) return "";
  return std::string(tensor_name.substr(0, tensor_name.size() - kSuffix.size()));
}

std::string excerpt(std::string_view s, std::size_t max_bytes) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t bad = 0;
    // The longest valid UTF-8 sequence starting at i (at most 4 bytes).
    std::size_t len = 1;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    const bool ok = i + len <= s.size() && valid_utf8(s.substr(i, len), &bad);
    const std::string piece = ok ? std::string(s.substr(i, len)) : [&] {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      return std::string(buf);
    }();
    if (out.size() + piece.size() > max_bytes) return out + "...";
    out += piece;
    i += ok ? len : 1;
  }
  return out;
}

std::optional<long long> parse_int(std::string_view s_in) {
  const std::string s = trim(s_in);
  if (s.empty()) return std::nullopt;
  const char* b = s.data();
  if (*b == '+') ++b;
  long long v = 0;
  const auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s_in) {
  const std::string s = trim(s_in);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return v;
}

}  // namespace qjobs
