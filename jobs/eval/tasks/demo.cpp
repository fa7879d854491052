// `demo` (spec/eval_tasks/demo.cpp): greedy answers to the prompts.
#include "common/error.hpp"
#include "jobs/eval/tasks.hpp"

namespace qjobs::eval {
using nlohmann::json;

json run_eval_demo(const EvalContext& c) {
  const auto prompts = c.task.value("prompts", std::vector<std::string>{});
  if (prompts.empty()) throw Error(ErrorKind::invalid_input, "demo task has no prompts");
  json answers = json::array();
  int64_t i = 0;
  const auto n = static_cast<int64_t>(prompts.size());
  if (c.progress) c.progress(0, n);
  for (const auto& p : prompts) {
    answers.push_back(
        {{"prompt", p},
         {"response", answer(c.model, c.tok, p, c.task.value("raw", false), c.task.value("max_new_tokens", 64))}});
    if (c.progress) c.progress(++i, n);
  }
  const std::string type = c.task.value("type", "");
  return {{"type", type},
          {"name", c.task.value("name", type)},
          {"answers", answers},
          {"protocol", "greedy decoding, stop at end-of-turn"}};
}

}  // namespace qjobs::eval
