// Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness
// scores it with a causal LM:
//   - context and continuation are tokenized together (the context's
//     trailing whitespace moves to the front of the continuation; the
//     continuation's ids are the tail of tok(context + continuation) after
//     tok(context)), with one BOS when the tokenizer has one;
//   - a choice's score is the sum of log-softmax over its continuation
//     tokens; acc takes the best score, acc_norm the best score divided by
//     the choice's length in characters (Unicode code points);
//   - ties go to the first choice.
// Formats read from local .jsonl/.json files (data.hpp's sources):
//   plain     {"context"|"query", "choices": [...], "gold"|"label": i}
//   mmlu      {"question", "choices": [4], "answer": i | "A".."D", "subject"}
//             prompt "The following are multiple choice questions (with
//             answers) about <subject>.\n\n<q>\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:",
//             choices " A".." D"
//   arc       {"question", "choices": {"text": [...], "label": [...]}, "answerKey"}
//             prompt "Question: <q>\nAnswer:", choices " <text>"
//   tinymmlu  {"input_formatted", "answer": i}: the prompt as given (few
//             shots included), choices " A".." D"
// n-shot examples come from another split, drawn with a fixed seed; shots are
// "<prompt> <gold choice>" joined by "\n\n" before the item's prompt.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "jobs/model/llama_model.hpp"
#include "jobs/tokenizer/tokenizer.hpp"

namespace qjobs::eval {

struct McItem {
  std::string id;
  std::string context;                 // the full prompt, shots included
  std::vector<std::string> choices;    // as scored after the context (delimiter included)
  std::vector<std::string> norm_text;  // what acc_norm's length counts, one per choice
  int64_t gold = -1;
};

struct McChoiceScore {
  std::vector<int64_t> context_ids;       // BOS first when the tokenizer has one
  std::vector<int64_t> continuation_ids;  // the tokens scored
  double loglikelihood = 0;
  bool is_greedy = false;
  int64_t num_chars = 0;  // code points of norm_text
  int64_t num_bytes = 0;  // UTF-8 bytes of norm_text
};

struct McItemResult {
  std::vector<McChoiceScore> choices;
  int64_t pred_acc = -1;
  int64_t pred_acc_norm = -1;
};

// lm-eval's _encode_pair: (context ids with BOS, continuation ids).
std::pair<std::vector<int64_t>, std::vector<int64_t>> encode_pair(const tokenizer::Tokenizer& tok,
                                                                  const std::string& context,
                                                                  const std::string& continuation);

// Scores every choice of `item` (one batched forward, right-padded). Inputs
// longer than the model's context are cut from the left.
McItemResult score_item(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const McItem& item);

struct McTaskOptions {
  std::string format = "plain";  // plain | mmlu | arc | tinymmlu
  int64_t num_fewshot = 0;       // shots per item, 0..64
  int64_t num_samples = -1;      // first N items; -1 = all
  uint64_t seed = 1234;          // shot sampling
};

// Builds the items of a task from its rows (`shots_pool`: the rows shots
// are drawn from; may be empty when num_fewshot is 0). Throws
// Error(data_corruption) naming the row index and field of a malformed row.
std::vector<McItem> build_items(const std::vector<nlohmann::json>& rows, const std::vector<nlohmann::json>& shots_pool,
                                const McTaskOptions& o);

// acc, acc_norm (means), their standard errors, n, and the protocol.
nlohmann::json run_multiple_choice(const model::LlamaModel& model, const tokenizer::Tokenizer& tok,
                                   const std::vector<McItem>& items,
                                   const std::function<void(int64_t, int64_t)>& progress);

}  // namespace qjobs::eval
