#include "spec/algorithm_catalog.hpp"

namespace qjobs {

using param::boolean;
using param::integer;
using param::string;
using param::string_list;

const std::vector<ParamSpec>& calibration_schema() {
  static const std::vector<ParamSpec> schema = {
      string("data_path", "a .txt, .jsonl or .json file or folder (as DATA_PATH)", nullptr),
      string("dataset", "dataset name under the data root (as DATASET_NAME)", nullptr),
      string("subset", "dataset subset (as DATASET_SUBNAME)", nullptr),
      string("split", "split to read", nullptr),
      string("text_column", "comma list of columns (as TEXT_COLUMN)", nullptr),
      integer("n_samples", "calibration windows (default: the algorithm's)", nullptr, 1, 1 << 20),
      integer("seqlen", "tokens per window (default: the algorithm's)", nullptr, 2, 1 << 20),
      integer("seed", "sampling seed", 0, 0, 1e15),
  };
  return schema;
}

const std::vector<ParamSpec>& eval_schema() {
  static const std::vector<ParamSpec> schema = [] {
    ParamSpec tasks{.name = "tasks",
                    .type = ParamType::section_list,
                    .description = "evaluations run on the original and on the quantized model"};
    tasks.children = {
        string("type",
               "ppl (any dataset), wikitext-ppl (WikiText-2 test), mc (multiple choice), demo (answers to prompts)",
               nullptr, {"ppl", "wikitext-ppl", "mc", "demo"}),
        string("name", "label in the report (default: the type)", nullptr),
        string("data_path", "a .txt, .jsonl or .json file or folder (as DATA_PATH)", nullptr),
        string("dataset", "dataset name under the data root (as DATASET_NAME)", nullptr),
        string("subset", "dataset subset (as DATASET_SUBNAME)", nullptr),
        string("split", "split to read", nullptr),
        string("text_column", "comma list of columns (as TEXT_COLUMN)", nullptr),
        integer("seqlen", "tokens per perplexity window", 2048, 2, 1 << 20),
        integer("num_samples", "first N windows (ppl) or items (mc); -1 = all", -1, -1, 1 << 30),
        string("format", "mc: row format", nullptr, {"plain", "mmlu", "arc", "tinymmlu"}),
        integer("num_fewshot", "mc: examples shown before each item", nullptr, 0, 64),
        string("fewshot_split", "mc: split the examples come from (default dev for mmlu, else train)", nullptr),
        integer("seed", "mc: seed of the example draw", nullptr, 0, (int64_t{1} << 62)),
        integer("batch_size", "windows per forward pass", 1, 1, 4096),
        string_list("prompts", "demo prompts, sent through the chat template"),
        integer("max_new_tokens", "demo answer length in tokens", 64, 1, 1 << 16),
        boolean("raw", "demo: send prompts as they are, without the chat template", false),
    };
    return std::vector<ParamSpec>{tasks};
  }();
  return schema;
}

const AlgorithmInfo* find_algorithm(std::string_view name) {
  for (const auto& a : algorithm_catalog())
    if (a.name == name) return &a;
  return nullptr;
}

bool algorithm_needs_data(const AlgorithmInfo& algo, const nlohmann::json& section) {
  return algo.needs_data ? algo.needs_data(section) : algo.calib_samples > 0;
}

}  // namespace qjobs
