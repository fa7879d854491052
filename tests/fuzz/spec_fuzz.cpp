// Fuzz target: the job spec parser (spec/job_spec) on arbitrary bytes.
// Besides the sanitizers, it checks the parser's contract: it never throws,
// a refusal lists at most kMaxSpecIssues + 1 bounded problems, and an
// accepted spec serializes (spec.json) to valid, bounded JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "spec/job_spec.hpp"
#include "common/strings.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = qjobs::parse_job_spec(text);
  if (r.spec.has_value() == !r.issues.empty()) std::abort();
  if (r.issues.size() > qjobs::kMaxSpecIssues + 1) std::abort();
  for (const auto& i : r.issues) {
    if (i.message.size() > 1100 || i.path.size() > 300) std::abort();
    if (!qjobs::valid_utf8(i.message) || !qjobs::valid_utf8(i.path)) std::abort();
    (void)qjobs::to_json(i).dump();
  }
  if (r.spec) {
    const std::string j = qjobs::to_json(*r.spec).dump();
    if (!qjobs::valid_utf8(j)) std::abort();
    // Expansion is bounded by the node and byte limits (with JSON overhead).
    if (j.size() > 16 * qjobs::kMaxSpecBytes) std::abort();
    (void)qjobs::job_spec_from_json(nlohmann::json::parse(j));
  }
  return 0;
}
