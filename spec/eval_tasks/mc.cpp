// `mc`: multiple choice scored by log-likelihood, as lm-eval does.
#include "spec/eval_task.hpp"

namespace qjobs {

EvalTaskInfo eval_task_mc() {
  return {
      .type = "mc",
      .description = "multiple choice scored by log-likelihood",
      .keys = {eval_key::data_path(), eval_key::dataset("read when data_path is empty"), eval_key::subset(),
               param::string("split", "split to read (default test)", nullptr),
               param::string("format", "row format", nullptr, {"plain", "mmlu", "arc", "tinymmlu"}),
               param::integer("num_fewshot", "examples shown before each item", nullptr, 0, 64),
               param::string("fewshot_split", "split the examples come from (default dev for mmlu, else train)",
                             nullptr),
               param::integer("seed", "seed of the example draw (default 1234)", nullptr, 0, (int64_t{1} << 62)),
               eval_key::num_samples("items", -1)},
      .data =
          "one object per line; plain: {\"context\", \"choices\": [...], \"gold\": i}; mmlu: {\"question\", "
          "\"choices\": [4 strings], \"answer\": 0-3 or A-D, \"subject\"}; arc: {\"question\", \"choices\": "
          "{\"text\": [...], \"label\": [...]}, \"answerKey\"} (the Hugging Face ai2_arc rows); tinymmlu: "
          "{\"input_formatted\", \"answer\": 0-3}",
      .metrics = {"acc", "acc_norm", "n"},
      .protocol =
          "lm-eval loglikelihood: acc is the choice whose tokens are likeliest after the context (with "
          "num_fewshot examples before it), acc_norm the likeliest per character of the choice",
      .datasets =
          [](const nlohmann::json& t) {
            const std::string name = t.value("dataset", std::string()), subset = t.value("subset", std::string());
            std::vector<EvalDataset> d = {{name, subset, t.value("split", std::string("test")), "dataset"}};
            if (const int64_t k = t.value("num_fewshot", int64_t{0}); k > 0)
              d.push_back(
                  {name, subset,
                   t.value("fewshot_split", std::string(t.value("format", std::string()) == "mmlu" ? "dev" : "train")),
                   "fewshot_split", k});
            return d;
          },
  };
}

}  // namespace qjobs
