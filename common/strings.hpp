// Small string helpers shared by every process.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qjobs {

std::string trim(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);  // keeps empty fields
std::string to_lower(std::string_view s);

// Levenshtein distance, case-insensitive, capped: any distance above `limit`
// is returned as limit + 1. Cost O(min(|a|, |b|) * (2 * limit + 1)): only the
// band of width 2 * limit + 1 around the diagonal is computed.
std::size_t edit_distance(std::string_view a, std::string_view b, std::size_t limit = 16);

// Words longer than this get no "did you mean": no name in a schema is that
// long, and comparing hostile megabyte keys must stay cheap.
inline constexpr std::size_t kMaxSuggestLength = 64;

// The candidate meant by `word`: the same name in another case, else the
// only candidate containing it (3 characters or more; AWQ: AutoAWQ), else
// the closest when it is near enough to be a plausible typo (distance <=
// max(2, |word| / 3)), else nullopt. Bounded cost: words
// longer than kMaxSuggestLength, and candidates whose length differs by more
// than the allowed distance, are not compared.
std::optional<std::string> closest_name(std::string_view word, const std::vector<std::string>& candidates);

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
// points above U+10FFFF). On failure, *bad_offset is the first bad byte.
bool valid_utf8(std::string_view s, std::size_t* bad_offset = nullptr);

// `s` cut to at most `max_bytes` (at a UTF-8 boundary, "..." appended) and
// with invalid UTF-8 bytes shown as \xNN, for echoing untrusted text in a
// message.
std::string excerpt(std::string_view s, std::size_t max_bytes = 80);

// The module a Linear's weight tensor belongs to: "model.layers.0.mlp.up_proj"
// for "model.layers.0.mlp.up_proj.weight"; "" for a name without that suffix.
std::string weight_stem(std::string_view tensor_name);

std::optional<long long> parse_int(std::string_view s);
std::optional<double> parse_double(std::string_view s);

}  // namespace qjobs
