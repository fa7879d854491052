// `wikitext-ppl` (spec/eval_tasks/wikitext_ppl.cpp): WikiText-2 raw test's
// rows in order, joined with blank lines, by perplexity.hpp's protocol.
#include "jobs/eval/tasks.hpp"

namespace qjobs::eval {

nlohmann::json run_eval_wikitext_ppl(const EvalContext& c) {
  const auto ds = task_dataset(c, eval_task_wikitext_ppl());
  return perplexity_result(c, data::evaluation_text(data::load_rows(ds)), data_label(ds));
}

}  // namespace qjobs::eval
