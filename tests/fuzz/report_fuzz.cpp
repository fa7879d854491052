// Fuzz target: what the server reads from a job folder and shows again.
// The bytes are a report.json (and a status.json) a worker, or anyone who can
// write the folder, left behind. Besides the sanitizers, it checks the
// contract of server/report_compare and common/job_dir: nothing throws, the
// summary of a report is flat (depth <= 5) whatever the input's depth, and
// GET /compare's body and jobctl's table are valid UTF-8, for the summary and
// for the raw (depth-checked) report alike.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "server/report_compare.hpp"

namespace {

int depth_of(const nlohmann::json& j) {
  if (!j.is_structured()) return 0;
  int d = 0;
  for (const auto& c : j) d = std::max(d, depth_of(c));
  return d + 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using qjobs::server::CompareInput;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    std::string problem;
    (void)qjobs::parse_worker_status(text, &problem);
    const auto summary = qjobs::server::report_summary(text, &problem);
    if (summary.has_value() != problem.empty()) std::abort();
    if (summary && depth_of(*summary) > 5) std::abort();
    std::vector<CompareInput> jobs = {{"a", "", "SUCCEEDED", summary.value_or(nullptr), problem},
                                      {"b", "b", "FAILED", nullptr, ""}};
    // compare_reports also takes unsummarized reports (any JSON): the raw
    // one, once its depth is checked as every job-folder read does.
    if (const auto raw = qjobs::parse_job_json(text, qjobs::server::kMaxReportDepth, &problem))
      jobs.push_back({"c", "c", "SUCCEEDED", *raw, ""});
    const auto table = qjobs::server::compare_reports(jobs);
    const std::string body = table.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!qjobs::valid_utf8(body)) std::abort();
    if (!qjobs::valid_utf8(qjobs::server::compare_markdown(table))) std::abort();
  } catch (...) {
    std::abort();  // the server would answer 500 (or die) here
  }
  return 0;
}
