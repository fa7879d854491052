// `mc` (spec/eval_tasks/mc.cpp): multiple choice by log-likelihood
// (multiple_choice.hpp), num_fewshot examples from fewshot_split drawn with
// seed, the first num_samples items.
#include <filesystem>

#include "jobs/eval/multiple_choice.hpp"
#include "jobs/eval/tasks.hpp"

namespace qjobs::eval {
using nlohmann::json;

json run_eval_mc(const EvalContext& c) {
  const auto& task = c.task;
  McTaskOptions o;
  o.format = task.value("format", std::string("plain"));
  o.num_fewshot = task.value("num_fewshot", 0);
  o.num_samples = task.value("num_samples", -1);
  o.seed = task.value("seed", 1234);
  data::DatasetSpec ds = task_dataset(c, eval_task_mc());
  ds.row_format = data::mc_row_format(o.format) + "; see the README's \"Datasets\" section";
  const auto rows = data::load_records(ds);
  std::vector<json> pool;
  std::string shot_split = ds.split;
  if (o.num_fewshot > 0) {
    data::DatasetSpec shots = ds;
    shots.split = task.value("fewshot_split", std::string(o.format == "mmlu" ? "dev" : "train"));
    // A single file holds one split: shots come from it, never the item itself.
    if (!ds.path.empty() && std::filesystem::is_regular_file(ds.path)) shots.split = ds.split;
    shot_split = shots.split;
    pool = data::load_records(shots);
  }
  const std::string type = task.value("type", "");
  json out = run_multiple_choice(c.model, c.tok, build_items(rows, pool, o), c.progress);
  out["type"] = type;
  out["name"] = task.value("name", type);
  out["format"] = o.format;
  out["num_fewshot"] = o.num_fewshot;
  if (o.num_fewshot > 0) out["fewshot"] = {{"split", shot_split}, {"seed", o.seed}};
  out["data"] = data_label(ds);
  return out;
}

}  // namespace qjobs::eval
