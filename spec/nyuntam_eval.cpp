#include "spec/nyuntam_eval.hpp"

#include <algorithm>
#include <cctype>

namespace qjobs {
using nlohmann::json;

const std::vector<std::string>& nyuntam_eval_task_names() {
  static const std::vector<std::string> names = {"wikitext", "arc_challenge", "arc_easy", "mmlu", "tinymmlu"};
  return names;
}

json map_nyuntam_eval_task(const std::string& entry, int64_t max_seq_length) {
  std::string name = entry;
  int64_t shots = -1;
  if (const auto colon = entry.find(':'); colon != std::string::npos) {
    name = entry.substr(0, colon);
    const std::string n = entry.substr(colon + 1);
    if (n.empty() || n.size() > 2 || !std::all_of(n.begin(), n.end(), [](unsigned char c) { return std::isdigit(c); }))
      return json("'" + entry + "': the shot count after ':' must be a number from 0 to 64");
    shots = std::stoll(n);
    if (shots > 64) return json("'" + entry + "': at most 64 shots");
  }
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "wikitext" && shots <= 0)
    return {{"type", "wikitext-ppl"},
            {"name", "wikitext"},
            {"seqlen", max_seq_length > 0 ? max_seq_length : 2048},
            {"num_samples", -1},
            {"batch_size", 1}};
  if (lower == "arc_challenge" || lower == "arc_easy")
    return {{"type", "mc"},
            {"name", entry},
            {"format", "arc"},
            {"dataset", "ai2_arc"},
            {"subset", lower == "arc_challenge" ? "ARC-Challenge" : "ARC-Easy"},
            {"split", "test"},
            {"fewshot_split", "train"},
            {"num_fewshot", std::max<int64_t>(shots, 0)},
            {"num_samples", -1},
            {"seed", 1234}};
  if (lower == "mmlu")
    return {{"type", "mc"},      {"name", entry},   {"format", "mmlu"},       {"dataset", "cais/mmlu"},
            {"subset", "all"},   {"split", "test"}, {"fewshot_split", "dev"}, {"num_fewshot", shots < 0 ? 5 : shots},
            {"num_samples", -1}, {"seed", 1234}};
  if (lower == "tinymmlu" && shots <= 0)
    return {{"type", "mc"},    {"name", entry},    {"format", "tinymmlu"}, {"dataset", "tinyBenchmarks/tinyMMLU"},
            {"split", "test"}, {"num_fewshot", 0}, {"num_samples", -1},    {"seed", 1234}};
  std::string known;
  for (const auto& n : nyuntam_eval_task_names()) known += (known.empty() ? "" : ", ") + n;
  return json("eval task '" + entry + "' is not one qjobs runs; known: " + known +
              " (arc and mmlu take ':<shots>'); or use an eval: section with tasks of type ppl, mc, demo");
}

}  // namespace qjobs
