// The evaluation tasks of a spec's `eval.tasks` list (schema in
// spec/algorithm_catalog.cpp, eval_schema):
//   ppl           perplexity.hpp's protocol on any dataset (rows joined "\n\n")
//   wikitext-ppl  the same on WikiText-2 raw test (dataset wikitext /
//                 wikitext-2-raw-v1, split test, under the data root)
//   mc            multiple choice by log-likelihood (multiple_choice.hpp):
//                 format plain | mmlu | arc | tinymmlu, num_fewshot shots
//                 from fewshot_split drawn with seed, num_samples items
//   demo          greedy answers to prompts, through the chat template
#pragma once

#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "jobs/model/llama_model.hpp"
#include "jobs/tokenizer/tokenizer.hpp"

namespace qjobs::eval {

// Runs one task; the result names its protocol next to its numbers.
// progress(done, total) may throw to stop. Throws Error(not_found) for
// missing data.
// `data_root`: where named datasets are read from (Environment::data_dir).
nlohmann::json run_task(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const nlohmann::json& task,
                        const std::filesystem::path& data_root, const std::function<void(int64_t, int64_t)>& progress);

// The token stream perplexity is computed on: one BOS, then the text.
at::Tensor perplexity_ids(const tokenizer::Tokenizer& tok, const std::string& text);

// The token ids a model is prompted with: the chat template (with BOS where
// the template lacks it) unless raw or the tokenizer has none, else BOS + text.
std::vector<int64_t> prompt_ids(const tokenizer::Tokenizer& tok, const std::string& prompt, bool raw);

// A greedy answer to `prompt` (chat template unless raw or the tokenizer
// has none), at most max_new_tokens, stopping at an end-of-turn token.
std::string answer(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const std::string& prompt, bool raw,
                   int64_t max_new_tokens);

}  // namespace qjobs::eval
