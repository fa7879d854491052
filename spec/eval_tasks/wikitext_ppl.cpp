// `wikitext-ppl`: perplexity on WikiText-2 raw test, the figure papers quote.
#include "spec/eval_task.hpp"

namespace qjobs {

EvalTaskInfo eval_task_wikitext_ppl() {
  return {
      .type = "wikitext-ppl",
      .description = "perplexity on WikiText-2 raw test",
      .keys = {eval_key::data_path(), eval_key::dataset("default wikitext"),
               param::string("subset", "dataset subset (default wikitext-2-raw-v1)", nullptr),
               param::string("split", "split to read (default test)", nullptr), eval_key::text_column(),
               eval_key::seqlen(), eval_key::num_samples("windows", -1), eval_key::batch_size("windows")},
      .data =
          "wikitext/wikitext-2-raw-v1/test.jsonl under the data root: the Hugging Face dataset's rows in order, "
          "blank rows included ({\"text\": ...} per line), joined with blank lines",
      .metrics = {"ppl", "mean_nll", "tokens", "windows"},
      .protocol =
          "GPTQ/AWQ: one BOS, non-overlapping windows of seqlen tokens, remainder dropped, exp(mean NLL of "
          "next-token predictions)",
      .windowed = true,
      .datasets =
          [](const nlohmann::json& t) {
            return std::vector<EvalDataset>{
                {t.value("dataset", std::string("wikitext")), t.value("subset", std::string("wikitext-2-raw-v1")),
                 t.value("split", std::string("test")), t.contains("dataset") ? "dataset" : "type"}};
          },
  };
}

}  // namespace qjobs
