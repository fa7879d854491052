// `ppl`: perplexity on any text, by the GPTQ/AWQ protocol.
#include "spec/eval_task.hpp"

namespace qjobs {

EvalTaskInfo eval_task_ppl() {
  return {
      .type = "ppl",
      .description = "perplexity on any dataset",
      .keys = {eval_key::data_path(), eval_key::dataset("read when data_path is empty"), eval_key::subset(),
               param::string("split", "split to read (default train)", nullptr), eval_key::text_column(),
               eval_key::seqlen(), eval_key::num_samples("windows", -1), eval_key::batch_size("windows")},
      .data = "text rows ({\"text\": ...} per line, or text_column's columns), joined with blank lines",
      .metrics = {"ppl", "mean_nll", "tokens", "windows"},
      .protocol =
          "GPTQ/AWQ: one BOS, non-overlapping windows of seqlen tokens, remainder dropped, exp(mean NLL of "
          "next-token predictions)",
      .windowed = true,
      .datasets =
          [](const nlohmann::json& t) {
            return std::vector<EvalDataset>{{t.value("dataset", std::string()), t.value("subset", std::string()),
                                             t.value("split", std::string("train")), "dataset"}};
          },
  };
}

}  // namespace qjobs
