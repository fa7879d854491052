#include "spec/eval_task.hpp"

#include <algorithm>

namespace qjobs {
using nlohmann::json;

const std::vector<EvalTaskInfo>& eval_task_catalog() {
#define QJOBS_EVAL_TASK_ROW(name) eval_task_##name(),
  static const std::vector<EvalTaskInfo> rows = {QJOBS_EVAL_TASKS(QJOBS_EVAL_TASK_ROW)};
#undef QJOBS_EVAL_TASK_ROW
  return rows;
}

const EvalTaskInfo* find_eval_task(std::string_view type) {
  for (const auto& t : eval_task_catalog())
    if (t.type == type) return &t;
  return nullptr;
}

std::string eval_task_types_text() {
  const auto& rows = eval_task_catalog();
  std::string s;
  for (std::size_t i = 0; i < rows.size(); ++i)
    s += (i == 0 ? "" : i + 1 == rows.size() ? " or " : ", ") + rows[i].type;
  return s;
}

const std::vector<ParamSpec>& eval_schema() {
  static const std::vector<ParamSpec> schema = [] {
    std::vector<std::string> types;
    std::string meaning;
    for (const auto& t : eval_task_catalog()) {
      types.push_back(t.type);
      meaning += (meaning.empty() ? "" : ", ") + t.type + " (" + t.description + ")";
    }
    std::vector<ParamSpec> keys = {param::string("type", meaning, nullptr, types),
                                   param::string("name", "label in the report (default: the type)", nullptr)};
    // The union of the rows' keys, each once (its first row's meaning and
    // bounds; defaults are the row's own, applied by check_eval_task).
    for (const auto& t : eval_task_catalog())
      for (const auto& k : t.keys)
        if (std::none_of(keys.begin(), keys.end(), [&](const ParamSpec& p) { return p.name == k.name; })) {
          keys.push_back(k);
          keys.back().default_value = nullptr;
        }
    return std::vector<ParamSpec>{
        param::section_list("tasks", "evaluations run on the original and on the quantized model", keys)};
  }();
  return schema;
}

std::vector<std::pair<std::string, std::string>> check_eval_task(const EvalTaskInfo& row, json& task) {
  std::vector<std::pair<std::string, std::string>> problems;
  for (const auto& item : task.items()) {
    const std::string& key = item.key();
    if (key == "type" || key == "name") continue;
    if (std::any_of(row.keys.begin(), row.keys.end(), [&](const ParamSpec& p) { return p.name == key; })) continue;
    std::string known;
    for (const auto& p : row.keys) known += (known.empty() ? "" : ", ") + p.name;
    problems.emplace_back(key, "a " + row.type + " task has no key '" + key + "'; its keys: type, name" +
                                   (known.empty() ? "" : ", " + known));
  }
  for (const auto& p : row.keys)
    if (!task.contains(p.name) && !p.default_value.is_null()) task[p.name] = p.default_value;
  return problems;
}

namespace eval_key {

ParamSpec data_path() {
  return param::string("data_path", "a .txt, .jsonl or .json file, or a folder of <split> files (as DATA_PATH)",
                       nullptr);
}
ParamSpec dataset(const std::string& what) {
  return param::string("dataset", "dataset name under the data root (as DATASET_NAME); " + what, nullptr);
}
ParamSpec subset() { return param::string("subset", "dataset subset (as DATASET_SUBNAME)", nullptr); }
ParamSpec split(std::string def) { return param::string("split", "split to read", std::move(def)); }
ParamSpec text_column() { return param::string("text_column", "comma list of columns (as TEXT_COLUMN)", nullptr); }
ParamSpec seqlen() { return param::integer("seqlen", "tokens per perplexity window", 2048, 2, 1 << 20); }
ParamSpec num_samples(const std::string& what, int64_t def) {
  return param::integer("num_samples", "first N " + what + "; -1 = all", def, -1, 1 << 30);
}
ParamSpec batch_size(const std::string& what) {
  return param::integer("batch_size", what + " per forward pass", 1, 1, 4096);
}

}  // namespace eval_key

}  // namespace qjobs
