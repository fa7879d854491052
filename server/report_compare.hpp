// `jobctl compare`: one table across jobs' report.json files (as the worker
// writes them, worker/pipeline.cpp). Columns: the original model (from the
// first report that has a baseline), then one per job. Rows: size on disk,
// every perplexity and multiple-choice metric by task name, and the time
// spent quantizing. A value a job does not have is null ("-").
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qjobs::server {

// {"columns": [...], "rows": [{"metric": str, "values": [number|null, ...]}]}
nlohmann::json compare_reports(const std::vector<std::string>& ids, const std::vector<nlohmann::json>& reports);

// The table as Markdown.
std::string compare_markdown(const nlohmann::json& table);

}  // namespace qjobs::server
