// The export formats a spec may name (EXPORT_FORMAT), one row each, with
// the rules of that format: what it can hold of an algorithm's output
// (AlgorithmOutput, stated by the algorithm's row) and of its per-Linear
// weight settings (WeightScheme), and of a model's Linears (the family
// table's shapes). The submission check (spec/job_spec.cpp) asks the row of
// the format a job names; the worker has one writer per name
// (worker/export_format.hpp), which a test keeps in step.
//
// Adding a format: one row in export_formats.cpp (its rules on the job and
// on each Linear), one writer file in worker/formats/ and its line in
// QJOBS_EXPORT_FORMATS (worker/export_format.hpp).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spec/algorithm_catalog.hpp"
#include "spec/linear_plan.hpp"

namespace qjobs {

// What a format's rule is given.
struct FormatCheck {
  const AlgorithmInfo& algorithm;
  const AlgorithmOutput& output;
  const quant::WeightScheme& weights;
};

// One quantized decoder Linear as the export sees it: its kind
// ("mlp.down_proj", experts as "block_sparse_moe.experts.*.w2"), widths and
// weight settings (the plan's, before the ragged-width rule).
struct LinearAtExport {
  const std::string& kind;
  int64_t in = 0, out = 0;
  const LinearScheme& scheme;
};

struct ExportFinding {
  bool error = false;
  std::string message;
};

struct ExportFormatRow {
  std::string name;         // as EXPORT_FORMAT spells it
  std::string description;  // what it is and which runtimes load it
  // What this format cannot hold of the job's output. keys: where the
  // finding belongs inside the algorithm's section ({"W_BIT"},
  // {"LAYER_OVERRIDES[2]", "W_BIT"}); empty: EXPORT_FORMAT.
  std::function<std::vector<SectionFinding>(const FormatCheck&)> check;
  // What it cannot hold (error) or changes (warning) of one Linear of the
  // model; none for a Linear it packs as planned.
  std::function<std::optional<ExportFinding>(const FormatCheck&, const LinearAtExport&)> linear;
};

const std::vector<ExportFormatRow>& export_formats();
// nullptr when no format has that name.
const ExportFormatRow* find_export_format(const std::string& name);
// The EXPORT_FORMAT values a spec may name, in the table's order.
const std::vector<std::string>& export_format_names();

// What an export of the decoder Linears of `config` (a config.json the
// model reader accepts) cannot hold, or changes, for the job's output: the
// format row's `linear` rule on each Linear, one finding per kind of Linear
// ("mlp.down_proj") and message, naming the widths and the layers. error:
// the export would fail or could not be read; otherwise a warning (ragged
// widths packed per output channel). The Linears and their widths come from
// the model's family table.
std::vector<ExportFinding> check_export_shapes(const FormatCheck& job, const std::string& export_format,
                                               const nlohmann::json& config);
// The same for ALGORITHM `algorithm` with its section (validated, defaults
// applied), through the algorithm's catalog row; none for Evaluate.
std::vector<ExportFinding> check_export_shapes(const std::string& algorithm, const std::string& export_format,
                                               const nlohmann::json& section, const nlohmann::json& config);

}  // namespace qjobs
