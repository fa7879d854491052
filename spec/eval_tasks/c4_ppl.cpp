// `c4-ppl`: perplexity on C4's validation text by the GPTQ paper's protocol
// (its "c4" figure, also AWQ's, SparseGPT's and llm-compressor's examples'):
// the first 1,100 documents of the first validation shard joined with single
// spaces, one BOS, the first 256 windows of seqlen tokens.
#include "spec/eval_task.hpp"

namespace qjobs {

EvalTaskInfo eval_task_c4_ppl() {
  return {
      .type = "c4-ppl",
      .description = "perplexity on C4 validation (GPTQ's protocol)",
      .keys = {eval_key::data_path(), eval_key::dataset("default allenai/c4"),
               param::string("subset", "dataset subset (default en)", nullptr),
               param::string("split", "split to read (default validation)", nullptr),
               param::integer("documents", "first N documents, joined with single spaces", 1100, 1, 1 << 30),
               eval_key::seqlen(), eval_key::num_samples("windows", 256), eval_key::batch_size("windows")},
      .data =
          "allenai/c4/en/validation.jsonl under the data root: the rows of C4's first validation shard "
          "(en/c4-validation.00000-of-00008.json.gz, uncompressed) in order, {\"text\": ...} per line",
      .metrics = {"ppl", "mean_nll", "tokens", "windows"},
      .protocol =
          "GPTQ's c4: the first `documents` documents joined with single spaces, one BOS, the first "
          "num_samples non-overlapping windows of seqlen tokens, exp(mean NLL of next-token predictions)",
      .windowed = true,
      .datasets =
          [](const nlohmann::json& t) {
            return std::vector<EvalDataset>{
                {t.value("dataset", std::string("allenai/c4")), t.value("subset", std::string("en")),
                 t.value("split", std::string("validation")), t.contains("dataset") ? "dataset" : "type"}};
          },
  };
}

}  // namespace qjobs
