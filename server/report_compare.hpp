// `GET /compare` and `jobctl compare`: jobs side by side, like with like.
// A number shares a row only with numbers of the same model, task and
// protocol (perplexity: data, window length and count; multiple choice:
// data, format, shots and sample count); anything else gets its own row,
// and the notes say why two results of one task were kept apart. Columns
// are labelled by what was done (algorithm, bits, group, format), not by
// id. Evaluation throughput is left out: the quantized model is run with
// dequantized float weights here, so its tokens/s is no serving speed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::server {

struct CompareInput {
  std::string id;
  std::string name;  // the job's name (JOB_ID), may be ""
  std::string state;
  nlohmann::json report;  // report_summary() of report.json, or null when the job has none
  std::string problem;    // why report.json was not read (refused, too large), or ""
};

// The largest report.json compare reads, and the deepest nesting it accepts.
inline constexpr std::size_t kMaxReportBytes = 16u << 20;
inline constexpr int kMaxReportDepth = 32;

// What compare reads of report.json text: only the fields it shows
// (algorithm, export_format, model.source, spec.params scalars, size_mib,
// stage_seconds.quantize, the eval results' numbers and protocol fields,
// and as counts: layers[].weights in "weight_forms", the recipe's
// activation kinds in "act_forms", its KV cache in "kv_cache"; the mean
// error of each decoder block's Linears in "block_errors": {metric, values}),
// each of the type it expects; everything else is dropped while parsing, so
// memory is the text plus this summary, whatever the report holds. nullopt
// with *problem set when the text is not JSON, not an object, or nested
// deeper than kMaxReportDepth. Never throws.
std::optional<nlohmann::json> report_summary(std::string_view text, std::string* problem);

// What a column is called, from what the job recorded: the form of every
// Linear by count ("GPTQ W4 g32 + W8 g32 sym compressed-tensors" for a
// mix), symmetric or not, act order, the activation scheme ("A8 dynamic",
// "A-FP8 static") and KV cache ("KV4", "KV-FP8"), then the format. A
// report without per-Linear forms (older ones) is labelled from its spec's
// keys (absent keys take the catalog's defaults).
std::string compare_label(const nlohmann::json& report);

// Any JSON is accepted in CompareInput::report (a field of the wrong type is
// ignored, never a throw); the server passes report_summary()'s output.
// {"columns": [{id, name, label, algorithm, model, state, export_format, size_mib, quantize_s,
//               settings: [[name, value], ...]: algorithm, weights, activations, "KV cache", format,
//                         then the spec's keys, values as strings,
//               block_errors: {metric: "rel_out_err" | "rel_fro_err", values: [mean per block, null
//                              where a block has none]} or null}],
//  "original_size_mib": {model: MiB},
//  "tables": [{model, task, metric, protocol, original, original_cached, values: [..], cached: [..]}],
//  "notes": [str]}
// values[i] belongs to columns[i]; null where that job has no such number.
nlohmann::json compare_reports(const std::vector<CompareInput>& jobs);

// The comparison as Markdown: one row per table entry, one column per job.
std::string compare_markdown(const nlohmann::json& comparison);

}  // namespace qjobs::server
