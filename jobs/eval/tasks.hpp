// The evaluation tasks of a spec's `eval.tasks` list. Each task type has a
// row (spec/eval_tasks/NAME.cpp: keys, data, metrics) and a runner here
// (jobs/eval/tasks/NAME.cpp: run_eval_NAME), both listed once in
// QJOBS_EVAL_TASKS (spec/eval_task_list.hpp).
#pragma once

#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "jobs/data/dataset.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/tokenizer/tokenizer.hpp"
#include "spec/eval_task.hpp"

namespace qjobs::eval {

// What a task's runner gets: the model, its tokenizer, the task entry (its
// row's defaults applied), where named datasets live, and progress(done,
// total), which may throw to stop.
struct EvalContext {
  const model::LlamaModel& model;
  const tokenizer::Tokenizer& tok;
  const nlohmann::json& task;
  std::filesystem::path data_root;
  const std::function<void(int64_t, int64_t)>& progress;
};

// The runners, one per file of jobs/eval/tasks/.
#define QJOBS_DECLARE_EVAL_RUNNER(name) nlohmann::json run_eval_##name(const EvalContext& c);
QJOBS_EVAL_TASKS(QJOBS_DECLARE_EVAL_RUNNER)
#undef QJOBS_DECLARE_EVAL_RUNNER

// Runs one task; the result names its protocol next to its numbers.
// progress(done, total) may throw to stop. Throws Error(not_found) for
// missing data.
// `data_root`: where named datasets are read from (Environment::data_dir).
nlohmann::json run_task(const model::LlamaModel& model, const tokenizer::Tokenizer& tok, const nlohmann::json& task,
                        const std::filesystem::path& data_root, const std::function<void(int64_t, int64_t)>& progress);

// The file a task reads: its data_path (with its split), else its row's
// first named dataset under the data root.
data::DatasetSpec task_dataset(const EvalContext& c, const EvalTaskInfo& row);

// Perplexity of `text` by the GPTQ/AWQ protocol with the task's seqlen,
// num_samples and batch_size; `data` names what was read in the result.
nlohmann::json perplexity_result(const EvalContext& c, const std::string& text, const std::string& data);

// "wikitext/wikitext-2-raw-v1:test", or the data_path.
std::string data_label(const data::DatasetSpec& ds);

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
