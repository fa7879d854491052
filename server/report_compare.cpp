#include "server/report_compare.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>

namespace qjobs::server {
using nlohmann::json;

namespace {

// The eval results a report holds for its own model: quantized, or the
// evaluated checkpoint of an Evaluate job.
const json& own_results(const json& r) {
  static const json empty = json::object();
  if (!r.contains("eval")) return empty;
  if (r["eval"].contains("quantized")) return r["eval"]["quantized"];
  if (r["eval"].contains("model")) return r["eval"]["model"];
  return empty;
}

json value_or_null(const json& results, const std::string& task, const std::string& key) {
  if (results.contains(task) && results[task].contains(key) && results[task][key].is_number()) return results[task][key];
  return nullptr;
}

}  // namespace

json compare_reports(const std::vector<std::string>& ids, const std::vector<json>& reports) {
  json columns = json::array({"original"});
  const json* baseline = nullptr;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& r = reports[i];
    std::string label = ids[i] + " " + r.value("algorithm", std::string("?"));
    if (r.contains("export_format") && r["export_format"].is_string() && r["export_format"] != "fake_quant")
      label += " (" + r["export_format"].get<std::string>() + ")";
    columns.push_back(label);
    if (!baseline && r.contains("eval") && r["eval"].contains("original") && !r["eval"]["original"].empty())
      baseline = &r["eval"]["original"];
  }
  json rows = json::array();
  const auto add = [&](const std::string& metric, json original, const std::function<json(const json&)>& per_job) {
    json values = json::array({std::move(original)});
    bool any = !values[0].is_null();
    for (const auto& r : reports) {
      values.push_back(per_job(r));
      any = any || !values.back().is_null();
    }
    if (any) rows.push_back({{"metric", metric}, {"values", values}});
  };
  const auto size_of = [](const json& r, const char* which) -> json {
    if (r.contains("size_mib") && r["size_mib"].contains(which) && r["size_mib"][which].is_number()) return r["size_mib"][which];
    return nullptr;
  };
  add("size on disk (MiB)", reports.empty() ? json(nullptr) : size_of(reports[0], "before"), [&](const json& r) {
    const auto after = size_of(r, "after");
    return after.is_null() ? size_of(r, "before") : after;
  });
  // Task names in first-seen order.
  std::vector<std::string> tasks;
  const auto note = [&](const json& results) {
    for (auto& [name, v] : results.items())
      if (std::find(tasks.begin(), tasks.end(), name) == tasks.end()) tasks.push_back(name);
  };
  if (baseline) note(*baseline);
  for (const auto& r : reports) note(own_results(r));
  for (const auto& t : tasks) {
    for (const char* key : {"ppl", "acc", "acc_norm"}) {
      add(t + " " + key, baseline ? value_or_null(*baseline, t, key) : json(nullptr),
          [&](const json& r) { return value_or_null(own_results(r), t, key); });
    }
  }
  add("quantize seconds", nullptr, [](const json& r) -> json {
    if (r.contains("stage_seconds") && r["stage_seconds"].contains("quantize")) return r["stage_seconds"]["quantize"];
    return nullptr;
  });
  return {{"columns", columns}, {"rows", rows}};
}

std::string compare_markdown(const json& table) {
  std::string md = "| metric |";
  std::string rule = "|---|";
  for (const auto& c : table["columns"]) {
    md += " " + c.get<std::string>() + " |";
    rule += "---|";
  }
  md += "\n" + rule + "\n";
  for (const auto& row : table["rows"]) {
    md += "| " + row["metric"].get<std::string>() + " |";
    for (const auto& v : row["values"]) {
      char buf[64] = "-";
      if (v.is_number()) std::snprintf(buf, sizeof buf, "%.4f", v.get<double>());
      md += std::string(" ") + buf + " |";
    }
    md += "\n";
  }
  return md;
}

}  // namespace qjobs::server
