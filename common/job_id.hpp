// The shape of a job id, shared by the server that makes ids and the spec
// parser that refuses names which could be taken for one.
#pragma once

#include <string_view>

namespace qjobs {

// True for "YYYYMMDD-HHMMSS-" followed by 16 lowercase hex digits, the shape
// new_job_id() gives (server/api.hpp). A job's name (JOB_ID) of that shape is
// refused at submission, so a name can never be mistaken for another job's
// id, and the server never looks one up by name.
constexpr bool looks_like_job_id(std::string_view s) {
  if (s.size() != 32 || s[8] != '-' || s[15] != '-') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 15) continue;
    const bool digit = c >= '0' && c <= '9';
    if (i < 15 ? !digit : !(digit || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

static_assert(looks_like_job_id("20261201-203000-9f3c2a71d04be815"));
static_assert(!looks_like_job_id("20261201-203000-9f3c2a71d04be81"));
static_assert(!looks_like_job_id("awq_quantization"));

}  // namespace qjobs
