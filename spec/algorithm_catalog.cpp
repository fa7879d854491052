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

double BlockShape::active_params() const {
  double sum = 0;
  for (const auto& l : linears) sum += l.token_share * l.weights();
  return sum;
}

double BlockShape::attention_flops() const {
  // Scores q.k and their mix with v: 2 * seqlen^2 * head_dim each, per head and window.
  return 4.0 * static_cast<double>(samples) * static_cast<double>(seqlen) * static_cast<double>(seqlen) *
         static_cast<double>(heads) * static_cast<double>(head_dim);
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
