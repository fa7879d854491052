// `GET /compare` and `jobctl compare`: jobs side by side, like with like.
// A number shares a row only with numbers of the same model, task and
// protocol (perplexity: data, window length and count; multiple choice:
// data, format, shots and sample count); anything else gets its own row,
// and the notes say why two results of one task were kept apart. Columns
// are labelled by what was done (algorithm, bits, group, format), not by
// id. Evaluation throughput is left out: the quantized model is run with
// dequantized float weights here, so its tokens/s is no serving speed.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::server {

struct CompareInput {
  std::string id;
  std::string name;           // the job's name (JOB_ID), may be ""
  std::string state;
  nlohmann::json report;      // report.json, or null when the job has none
};

// What a column is called: "RTN W4 g32 compressed-tensors", from a report's
// normalized spec (absent keys take the catalog's defaults).
std::string compare_label(const nlohmann::json& report);

// {"columns": [{id, name, label, algorithm, model, state, export_format, size_mib, quantize_s}],
//  "original_size_mib": {model: MiB},
//  "tables": [{model, task, metric, protocol, original, original_cached, values: [..], cached: [..]}],
//  "notes": [str]}
// values[i] belongs to columns[i]; null where that job has no such number.
nlohmann::json compare_reports(const std::vector<CompareInput>& jobs);

// The comparison as Markdown: one row per table entry, one column per job.
std::string compare_markdown(const nlohmann::json& comparison);

}  // namespace qjobs::server
