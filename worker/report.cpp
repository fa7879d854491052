#include "worker/report.hpp"

#include <algorithm>
#include <cstdio>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "jobs/model/device.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

// A horizontal bar chart of the per-layer relative weight and output errors.
std::string layer_error_svg(const std::vector<quant::LayerError>& errs) {
  double top = 1e-12;
  for (const auto& e : errs) top = std::max({top, e.rel_fro_err, e.rel_out_err});
  const int label_w = 300, bar_w = 420, row_h = 16, head = 40;
  const int height = head + row_h * static_cast<int>(errs.size()) + 30;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(label_w + bar_w + 80) +
                    "\" height=\"" + std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg +=
      "<text x=\"4\" y=\"14\" font-size=\"13\">Relative error per layer: weight (blue), output on calibration inputs "
      "(orange)</text>\n";
  svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"22\" width=\"10\" height=\"8\" fill=\"#4878d0\"/><text x=\"" +
         std::to_string(label_w + 14) + "\" y=\"30\">weight ||W-Q||/||W||</text>\n";
  svg += "<rect x=\"" + std::to_string(label_w + 160) +
         "\" y=\"22\" width=\"10\" height=\"8\" fill=\"#ee854a\"/><text x=\"" + std::to_string(label_w + 174) +
         "\" y=\"30\">output ||XW-XQ||/||XW||</text>\n";
  for (std::size_t i = 0; i < errs.size(); ++i) {
    const auto& e = errs[i];
    const int y = head + row_h * static_cast<int>(i);
    svg += "<text x=\"" + std::to_string(label_w - 6) + "\" y=\"" + std::to_string(y + 11) + "\" text-anchor=\"end\">" +
           xml_escape(e.name) + "</text>\n";
    const int w1 = static_cast<int>(bar_w * e.rel_fro_err / top);
    svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(y + 2) + "\" width=\"" +
           std::to_string(std::max(w1, 1)) + "\" height=\"6\" fill=\"#4878d0\"><title>" + num("%.5f", e.rel_fro_err) +
           "</title></rect>\n";
    if (e.rel_out_err >= 0) {
      const int w2 = static_cast<int>(bar_w * e.rel_out_err / top);
      svg += "<rect x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(y + 8) + "\" width=\"" +
             std::to_string(std::max(w2, 1)) + "\" height=\"6\" fill=\"#ee854a\"><title>" + num("%.5f", e.rel_out_err) +
             "</title></rect>\n";
    }
    svg += "<text x=\"" + std::to_string(label_w + std::max(w1, 1) + 4) + "\" y=\"" + std::to_string(y + 9) + "\">" +
           num("%.4f", e.rel_fro_err) + "</text>\n";
  }
  svg += "<text x=\"" + std::to_string(label_w) + "\" y=\"" + std::to_string(height - 8) +
         "\">scale: full bar = " + num("%.4f", top) + "</text>\n</svg>\n";
  return svg;
}

// The rows of the before/after table: label, value before, value after,
// and how to show the change.
struct ReportRow {
  std::string label;
  std::optional<double> before, after;
  bool relative = true;  // change in % (else an absolute difference)
  const char* format = "%.4f";
  bool before_cached = false;  // the original's number came from the baseline cache
};

std::vector<ReportRow> metric_rows(const json& before, const json& after) {
  std::vector<ReportRow> rows;
  const auto value = [](const json& results, const std::string& task, const char* key) -> std::optional<double> {
    if (!results.contains(task) || !results[task].contains(key)) return std::nullopt;
    return results[task][key].get<double>();
  };
  std::vector<std::string> names;
  for (auto& [name, r] : before.items()) names.push_back(name);
  for (auto& [name, r] : after.items())
    if (!before.contains(name)) names.push_back(name);
  for (const auto& name : names) {
    const json& r = before.contains(name) ? before[name] : after[name];
    if (r.contains("ppl")) {
      rows.push_back({name + " perplexity (seqlen " + std::to_string(r.value("seqlen", 0)) + ", " +
                          std::to_string(r.value("windows", 0)) + " windows)",
                      value(before, name, "ppl"), value(after, name, "ppl")});
      // tokens/s is left out of the table: the quantized model runs here with
      // dequantized float weights (simulated quantization), so its speed says
      // nothing about a serving engine's; write_report notes it apart.
    } else if (r.contains("acc")) {
      const std::string what = name + " (" + r.value("format", std::string("mc")) + ", " +
                               std::to_string(r.value("num_fewshot", 0)) +
                               "-shot, n=" + std::to_string(r.value("n", 0)) + ")";
      rows.push_back({what + " acc", value(before, name, "acc"), value(after, name, "acc"), false});
      rows.push_back({what + " acc_norm", value(before, name, "acc_norm"), value(after, name, "acc_norm"), false});
    }
  }
  for (auto& row : rows)
    for (auto& [name, r] : before.items())
      if (row.label.rfind(name + " ", 0) == 0 && r.is_object() && r.contains("cached")) row.before_cached = true;
  return rows;
}

constexpr double kMiB = 1024.0 * 1024.0;

// What Linear `name` (with or without ".weight") was quantized to, from the
// form the algorithm computed: "int4 g128", "int8 per channel", "NVFP4",
// "FP8", "INT8"; "float" when it has none (HQQ's real zero points, fake_quant
// of algorithms without an integer form).
std::string weight_form(const quant::QuantOutput& q, std::string name) {
  if (name.ends_with(".weight")) name.resize(name.size() - 7);
  if (const auto it = q.int_weights.find(name); it != q.int_weights.end()) {
    const int64_t g = it->second.format_group_size();
    return "int" + std::to_string(it->second.bits) + (g == -1 ? " per channel" : " g" + std::to_string(g));
  }
  if (const auto it = q.fp4_weights.find(name); it != q.fp4_weights.end())
    return it->second.kind == numeric::Fp4Kind::nvfp4 ? "NVFP4" : "MXFP4";
  if (q.w8a8_weights.count(name)) return q.w8a8_float ? "FP8" : "INT8";
  return "float";
}

json layers_json(const quant::QuantOutput* q) {
  json layers = json::array();
  if (q)
    for (const auto& e : q->layer_errors)
      layers.push_back({{"name", e.name},
                        {"weights", weight_form(*q, e.name)},
                        {"rel_fro_err", e.rel_fro_err},
                        {"max_abs_err", e.max_abs_err},
                        {"rel_out_err", e.rel_out_err < 0 ? json(nullptr) : json(e.rel_out_err)}});
  return layers;
}

// The size row and one row per metric: original and quantized side by side,
// or the model's values alone for an evaluation-only job.
std::string metrics_table(const json& before, const json& after, uint64_t size_before,
                          std::optional<uint64_t> size_after) {
  std::string md;
  const auto rows = metric_rows(before, after);
  if (!size_after) {
    md += "| | value |\n|---|---|\n";
    md += "| size on disk (MiB) | " + num("%.2f", size_before / kMiB) + " |\n";
    for (const auto& r : rows)
      md += "| " + r.label + " | " +
            (r.before ? num(r.format, *r.before) + (r.before_cached ? " (cached)" : "") : "-") + " |\n";
    return md;
  }
  md += "| | original | quantized | change |\n|---|---|---|---|\n";
  md += "| size on disk (MiB) | " + num("%.2f", size_before / kMiB) + " | " + num("%.2f", *size_after / kMiB) + " | " +
        num("%+.1f%%", 100.0 * (static_cast<double>(*size_after) / static_cast<double>(size_before) - 1)) + " |\n";
  for (const auto& r : rows) {
    std::string change = "-";
    if (r.before && r.after)
      change = r.relative ? num("%+.2f%%", 100.0 * (*r.after / *r.before - 1)) : num("%+.4f", *r.after - *r.before);
    md += "| " + r.label + " | " + (r.before ? num(r.format, *r.before) + (r.before_cached ? " (cached)" : "") : "-") +
          " | " + (r.after ? num(r.format, *r.after) : "-") + " | " + change + " |\n";
  }
  return md;
}

// Below the table: which numbers were reused, the evaluation's throughput
// (said for what it is) and each task's protocol.
std::string metric_notes(const json& before, const json& after, bool evaluate_only) {
  std::string md;
  bool any_cached = false;
  for (auto& [name, r] : before.items()) any_cached = any_cached || r.contains("cached");
  if (any_cached)
    md += std::string(
        "\nNumbers marked (cached) were not computed by this job: they were reused from an earlier job on "
        "the same model files, task and data (user_data/.cache/baselines).\n");
  std::string speed;
  for (const auto* results : {&before, &after})
    for (auto& [name, r] : results->items())
      if (r.is_object() && r.contains("tokens_per_s") && r["tokens_per_s"].is_number() && !r.contains("cached"))
        speed += (speed.empty() ? "" : "; ") + name +
                 (evaluate_only        ? ""
                  : results == &before ? " original "
                                       : " quantized ") +
                 num("%.0f", r["tokens_per_s"].get<double>());
  if (!speed.empty())
    md += "\nEvaluation throughput in tokens/s (" + speed + ") is qjobs' float reference forward on this machine" +
          (evaluate_only ? std::string("") : std::string(", the quantized model simulated with dequantized weights")) +
          ", measured while other work may share the machine: it is not the speed of a serving engine.\n";
  md += "\nProtocols:\n";
  for (const auto* results : {&before, &after})
    for (auto& [name, r] : results->items())
      if (r.contains("protocol") && (results == &before || !before.contains(name)))
        md += "- " + name + ": " + r["protocol"].get<std::string>() +
              (r.contains("data") ? " (data: " + r["data"].get<std::string>() + ")" : "") + "\n";
  return md;
}

std::string verify_line(const json& verify) {
  if (!verify.is_object() || !verify.contains("loader")) return "";
  return "\nVerified: " + verify["loader"].get<std::string>() +
         " decodes the packed weights the job computed (largest "
         "checksum difference " +
         json(verify.value("weight_max_rel_diff", 0.0)).dump() + " of sum |w|)" +
         (verify.contains("logit_rel_diff") ? ", and transformers' logits of them differ from qjobs' by " +
                                                  json(verify["logit_rel_diff"]).dump() + " relative"
                                            : "") +
         ".\n";
}

// The answers of generation tasks, the original's beside the quantized's.
std::string answers_section(const json& before, const json& after, bool evaluate_only) {
  std::string md;
  for (auto& [name, b] : before.items()) {
    if (!b.contains("answers")) continue;
    md += "\n## " + name + "\n\n";
    for (std::size_t i = 0; i < b["answers"].size(); ++i) {
      md += "**Prompt:** " + b["answers"][i]["prompt"].get<std::string>() + "\n\n";
      md += std::string(evaluate_only ? "- answer: " : "- original: ") +
            b["answers"][i]["response"].get<std::string>() + "\n";
      if (after.contains(name)) md += "- quantized: " + after[name]["answers"][i]["response"].get<std::string>() + "\n";
      md += "\n";
    }
  }
  return md;
}

// Mixture of experts: how the calibration tokens were routed.
std::string experts_section(const json& experts) {
  std::string md =
      "\n## Calibration tokens per expert\n\n| block | tokens per expert (top-k picks) | calibrated on all tokens "
      "|\n|---|---|---|\n";
  for (const auto& [block, e] : experts.items()) {
    std::string tokens, fallback;
    for (const auto& t : e["tokens"]) tokens += (tokens.empty() ? "" : " ") + t.dump();
    for (const auto& f : e["fallback"]) fallback += (fallback.empty() ? "expert " : ", ") + f.dump();
    md += "| " + block.substr(0, block.size() - 1) + " | " + tokens + " | " +
          (fallback.empty() ? std::string("none") : fallback + " (fewer than " + e["min_tokens"].dump() + " tokens)") +
          " |\n";
  }
  md +=
      "\nAn expert routed fewer tokens than the hidden size is calibrated on every token of its block "
      "(llm-compressor's calibrate-all-experts), as its Hessian would be rank-deficient.\n";
  return md;
}

// The per-layer errors: a plot (written beside the report) and a table.
std::string layers_section(const quant::QuantOutput& q, const JobDir& dir) {
  const auto& errors = q.layer_errors;
  double worst = 0;
  for (const auto& e : errors) worst = std::max(worst, e.rel_fro_err);
  write_file_atomic(dir.report_md().parent_path() / "layer_errors.svg", layer_error_svg(errors));
  std::string md = "\n## Per-layer error\n\n![relative error per layer](layer_errors.svg)\n\n";
  md += std::to_string(errors.size()) + " layers, worst relative weight error " + num("%.4f", worst) + "\n\n";
  md += "| layer | weights | rel. weight error | max abs error | rel. output error |\n|---|---|---|---|---|\n";
  for (const auto& e : errors)
    md += "| " + e.name + " | " + weight_form(q, e.name) + " | " + num("%.5f", e.rel_fro_err) + " | " +
          num("%.5f", e.max_abs_err) + " | " + (e.rel_out_err < 0 ? std::string("-") : num("%.5f", e.rel_out_err)) +
          " |\n";
  return md;
}

std::string runtime_line(const json& memory, const json& rt) {
  if (!memory.is_object() || !memory.contains("host_peak_mib")) return "";
  std::string md =
      "\nComputed on " + memory.value("placement", std::string("?")) + " with libtorch " +
      rt["torch"].get<std::string>() +
      (rt["cuda_built"].get<bool>() ? " (CUDA " + rt["cuda_runtime"].get<std::string>() + ")" : " (CPU only)") +
      "; peak host memory " + num("%.0f", memory["host_peak_mib"].get<double>()) + " MiB (checkpoint " +
      num("%.0f", memory["checkpoint_mib"].get<double>()) + " MiB)";
  if (memory["device_peak_mib"].is_number())
    md += ", peak device memory " + num("%.0f", memory["device_peak_mib"].get<double>()) + " MiB";
  if (memory.contains("disk_peak_mib") && memory["disk_peak_mib"].is_number())
    md += ", peak disk in the job folder " + num("%.0f", memory["disk_peak_mib"].get<double>()) + " MiB";
  return md + ".\n";
}

std::string stage_times(const json& secs) {
  std::string md = "\n## Time per stage\n\n| stage | seconds |\n|---|---|\n";
  for (const char* st : {"load", "baseline", "quantize", "package", "evaluate", "report"})
    if (secs.contains(st)) md += std::string("| ") + st + " | " + num("%.2f", secs[st].get<double>()) + " |\n";
  return md;
}

// The estimate the server made at submission (the "estimate" event it
// wrote into events.jsonl), or null. The file is the job folder's and is
// read bounded: past 4 MiB, or a line that is not an object, no estimate.
json submitted_estimate(const JobDir& dir) {
  std::error_code ec;
  if (fs::file_size(dir.events(), ec) > (4u << 20) || ec) return nullptr;
  std::string text;
  try {
    text = read_file(dir.events());
  } catch (const Error&) {
    return nullptr;
  }
  std::size_t at = 0;
  while (at < text.size()) {
    const auto end = std::min(text.find('\n', at), text.size());
    const auto e = json::parse(text.substr(at, end - at), nullptr, false);
    at = end + 1;
    if (e.is_object() && e.value("type", std::string()) == "estimate" && e.contains("estimate") &&
        e["estimate"].is_object())
      return e["estimate"];
  }
  return nullptr;
}

// The estimate beside what the job took: seconds of the stages it counts
// (quantize; baseline and evaluate), peak host memory, peak disk, output.
json estimate_against_measured(const json& estimate, const json& secs, const json& memory,
                               std::optional<uint64_t> size_after) {
  if (!estimate.is_object()) return nullptr;
  const auto number = [](const json& j, const char* k) { return j.contains(k) && j[k].is_number(); };
  double took = 0;
  for (const char* st : {"quantize", "baseline", "evaluate"})
    if (number(secs, st)) took += secs[st].get<double>();
  json m = {{"seconds", took},
            {"host_bytes",
             number(memory, "host_peak_mib") ? json(memory["host_peak_mib"].get<double>() * kMiB) : json(nullptr)},
            {"disk_bytes",
             number(memory, "disk_peak_mib") ? json(memory["disk_peak_mib"].get<double>() * kMiB) : json(nullptr)},
            {"output_bytes", size_after ? json(*size_after) : json(nullptr)}};
  if (number(memory, "device_peak_mib")) m["device_bytes"] = memory["device_peak_mib"].get<double>() * kMiB;
  json out = estimate;
  out["measured"] = m;
  return out;
}

std::string estimate_section(const json& e) {
  if (!e.is_object() || !e.contains("measured")) return "";
  std::string md =
      "\n## Estimated before the start\n\n| figure | estimated | measured | measured / estimated "
      "|\n|---|---|---|---|\n";
  const auto row = [&](const char* label, const char* key, double unit, const char* fmt) {
    const auto& m = e["measured"];
    if (!e.contains(key) || !e[key].is_number() || !m.contains(key) || !m[key].is_number()) return;
    const double est = e[key].get<double>(), got = m[key].get<double>();
    md += std::string("| ") + label + " | " + num(fmt, est / unit) + " | " + num(fmt, got / unit) + " | " +
          (est > 0 ? num("%.2f", got / est) : std::string("-")) + " |\n";
  };
  row("time (calibration and evaluation), s", "seconds", 1, "%.1f");
  row("peak host memory, MiB", "host_bytes", kMiB, "%.0f");
  row("peak device memory, MiB", "device_bytes", kMiB, "%.0f");
  row("peak disk, MiB", "disk_bytes", kMiB, "%.1f");
  row("output, MiB", "output_bytes", kMiB, "%.2f");
  if (e.contains("rates") && e["rates"].is_object() && e["rates"].contains("gemm_gflops") &&
      e["rates"]["gemm_gflops"].is_number())
    md += "\nFrom the model's shapes and the rates measured on " + e["rates"].value("device", std::string("?")) +
          " (float32 GEMM " + num("%.0f", e["rates"]["gemm_gflops"].get<double>()) + " GFLOP/s).\n";
  for (const auto& n : e.value("notes", json::array()))
    if (n.is_string()) md += "- " + n.get<std::string>() + "\n";
  return md;
}

}  // namespace

void write_report(const JobSpec& spec, const fs::path& model_dir, uint64_t size_before,
                  std::optional<uint64_t> size_after, const quant::QuantOutput* q, const json& written_qc,
                  const std::string& export_note, const JobDir& dir, StatusReporter& rep, const json& before,
                  const json& after, const json& memory, const json& verify) {
  const bool evaluate_only = q == nullptr;
  json report = {
      {"spec", to_json(spec)},
      {"model", {{"source", spec.model}, {"resolved", model_dir.string()}}},
      {"algorithm", spec.algorithm},
      {"export_format", evaluate_only ? json(nullptr) : json(spec.export_format)},
      {"recipe", q ? q->quantization_config : json(nullptr)},
      {"quantization_config", written_qc},
      {"size_mib", {{"before", size_before / kMiB}, {"after", size_after ? json(*size_after / kMiB) : json(nullptr)}}},
      {"metrics", rep.metrics()},
      {"layers", layers_json(q)},
      {"stage_seconds", rep.stage_seconds()},
      {"memory", memory},
      // The libtorch, its CUDA, the driver and the GPUs this attempt saw.
      {"runtime", json::parse(model::runtime_info_json())},
      {"eval", evaluate_only ? json{{"model", before}} : json{{"original", before}, {"quantized", after}}},
      // The verify stage's reference read (worker/verify.hpp); null when it did not run.
      {"verify", verify},
  };
  if (q && !q->experts.empty()) report["experts"] = q->experts;
  // What the server estimated at submission, beside what it took.
  report["estimate"] = estimate_against_measured(submitted_estimate(dir), report["stage_seconds"], memory, size_after);
  write_file_atomic(dir.report_json(), report.dump(2));

  std::string md = "# qjobs report: " + spec.algorithm + " on " + spec.model + "\n\n";
  md += metrics_table(before, after, size_before, evaluate_only ? std::nullopt : size_after);
  md += metric_notes(before, after, evaluate_only);
  if (q && !export_note.empty()) md += "\n" + export_note + "\n";
  md += verify_line(verify);
  md += answers_section(before, after, evaluate_only);
  if (q && !q->experts.empty()) md += experts_section(q->experts);
  if (q && !q->layer_errors.empty()) md += layers_section(*q, dir);
  md += runtime_line(memory, report["runtime"]);
  md += stage_times(rep.stage_seconds());
  md += estimate_section(report["estimate"]);
  write_file_atomic(dir.report_md(), md);
}

}  // namespace qjobs::worker
