// `c4-ppl` (spec/eval_tasks/c4_ppl.cpp): the first `documents` rows joined
// with single spaces, by perplexity.hpp's protocol over num_samples windows.
#include "jobs/eval/tasks.hpp"

namespace qjobs::eval {

nlohmann::json run_eval_c4_ppl(const EvalContext& c) {
  const auto ds = task_dataset(c, eval_task_c4_ppl());
  const auto rows = data::load_rows(ds);
  const auto n = std::min<std::size_t>(rows.size(), c.task.value("documents", std::size_t{1100}));
  std::string text;
  for (std::size_t i = 0; i < n; ++i) text += (i == 0 ? "" : " ") + rows[i];
  return perplexity_result(c, text, data_label(ds));
}

}  // namespace qjobs::eval
