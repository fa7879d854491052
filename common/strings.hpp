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

// Levenshtein distance, case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is near enough to be a plausible
// typo (distance <= max(2, |word| / 3)), else nullopt.
std::optional<std::string> closest_name(std::string_view word,
                                        const std::vector<std::string>& candidates);

std::optional<long long> parse_int(std::string_view s);
std::optional<double> parse_double(std::string_view s);

}  // namespace qjobs
