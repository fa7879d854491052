// The evaluation tasks a spec's `eval.tasks` list may name, one row each:
// its keys with meaning and defaults, the data it reads and its row layout,
// the figures its result holds. Each row lives in spec/eval_tasks/NAME.cpp
// and is listed once in QJOBS_EVAL_TASKS (spec/eval_task_list.hpp); the
// worker's runner of the task is jobs/eval/tasks/NAME.cpp. The submission
// check, the README's spec reference, `jobctl tasks` and the dashboard's
// help (GET /eval-tasks) are all read from these rows. No libtorch.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/param_spec.hpp"
#include "spec/eval_task_list.hpp"

namespace qjobs {

// A dataset a task reads by name under the data root when it has no
// data_path: the submission check looks for it, the baseline cache keys on
// its file.
struct EvalDataset {
  std::string name, subset, split;
  std::string key;  // the spec key that chose it ("dataset", "fewshot_split"), for messages
  // Rows it must hold besides the item being asked (k-shot examples: k);
  // one more when they come from the items' own file. 0: no minimum.
  int64_t min_rows = 0;
};

struct EvalTaskInfo {
  std::string type;         // what `type:` says, e.g. "wikitext-ppl"
  std::string description;  // one line
  // The task's keys besides `type` and `name`, with meaning and defaults
  // (a default is written into the task when the key is absent).
  std::vector<ParamSpec> keys;
  std::string data;                  // what it reads, and the layout of a row
  std::vector<std::string> metrics;  // the figures of its result (report.json), e.g. "ppl"
  std::string protocol;              // how the figure is computed, in a sentence
  // seqlen is a window over the text: a longer one than the model's
  // positions is refused (or cut when it is the default).
  bool windowed = false;
  // The named datasets it reads for this task entry (defaults applied) when
  // it has no data_path; empty when it reads none.
  std::function<std::vector<EvalDataset>(const nlohmann::json& task)> datasets;
};

// Every task, in the order of QJOBS_EVAL_TASKS.
const std::vector<EvalTaskInfo>& eval_task_catalog();
const EvalTaskInfo* find_eval_task(std::string_view type);
// "ppl, wikitext-ppl, mc or demo": the types, for messages.
std::string eval_task_types_text();

// The `eval` section's schema: `tasks`, a list whose items take `type`,
// `name` and the union of every task's keys. Which keys a given type takes,
// and their defaults, come from its row (check_eval_task).
const std::vector<ParamSpec>& eval_schema();

// A task entry's problems against its row: a key its type does not take
// ("key", "message"), in key order. Applies the row's defaults to `task`.
std::vector<std::pair<std::string, std::string>> check_eval_task(const EvalTaskInfo& row, nlohmann::json& task);

// Keys several tasks share, each with its one meaning.
namespace eval_key {
ParamSpec data_path();
ParamSpec dataset(const std::string& what);
ParamSpec subset();
ParamSpec split(std::string def);
ParamSpec text_column();
ParamSpec seqlen();
ParamSpec num_samples(const std::string& what, int64_t def);
ParamSpec batch_size(const std::string& what);
}  // namespace eval_key

// The rows, one function per file of spec/eval_tasks/.
#define QJOBS_DECLARE_EVAL_TASK(name) EvalTaskInfo eval_task_##name();
QJOBS_EVAL_TASKS(QJOBS_DECLARE_EVAL_TASK)
#undef QJOBS_DECLARE_EVAL_TASK

}  // namespace qjobs
