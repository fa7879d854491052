// Nyuntam's LMQuant `eval.tasks` entries (lm-eval task names with an
// optional ":<shots>", such as "wikitext" or "arc_challenge:25") mapped onto
// qjobs eval tasks (algorithm_catalog.hpp, eval_schema). The datasets are
// read from the data root under the Hugging Face names:
//   wikitext             wikitext-ppl, seqlen = eval.max_seq_length or 2048
//   arc_challenge[:n]    mc arc, ai2_arc/ARC-Challenge test, shots from train
//   arc_easy[:n]         mc arc, ai2_arc/ARC-Easy test, shots from train
//   mmlu[:n]             mc mmlu, cais/mmlu/all test, shots from dev (default 5)
//   tinymmlu             mc tinymmlu, tinyBenchmarks/tinyMMLU test
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs {

// The qjobs task for `entry`, or a JSON string holding the error (naming the
// known tasks) when it maps to nothing.
nlohmann::json map_nyuntam_eval_task(const std::string& entry, int64_t max_seq_length);

const std::vector<std::string>& nyuntam_eval_task_names();

}  // namespace qjobs
