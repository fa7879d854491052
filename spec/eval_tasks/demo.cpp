// `demo`: greedy answers to prompts, the original's beside the quantized's.
#include "spec/eval_task.hpp"

namespace qjobs {

EvalTaskInfo eval_task_demo() {
  return {
      .type = "demo",
      .description = "answers to prompts",
      .keys = {param::string_list("prompts", "the prompts, sent through the chat template"),
               param::integer("max_new_tokens", "answer length in tokens", 64, 1, 1 << 16),
               param::boolean("raw", "send prompts as they are, without the chat template", false)},
      .data = "none: the prompts are in the spec",
      .metrics = {"answers"},
      .protocol = "greedy decoding, stop at end-of-turn",
      .datasets = [](const nlohmann::json&) { return std::vector<EvalDataset>{}; },
  };
}

}  // namespace qjobs
