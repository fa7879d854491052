#include "common/job_state.hpp"

#include <array>
#include <utility>

namespace qjobs {
namespace {

constexpr std::array<std::pair<JobState, std::string_view>, 6> kStates{{
    {JobState::queued, "QUEUED"},
    {JobState::running, "RUNNING"},
    {JobState::cancelling, "CANCELLING"},
    {JobState::succeeded, "SUCCEEDED"},
    {JobState::failed, "FAILED"},
    {JobState::cancelled, "CANCELLED"},
}};

struct ErrorTypeRow {
  ErrorType type;
  std::string_view name;
  int exit_code;
};

constexpr std::array<ErrorTypeRow, 10> kErrorTypes{{
    {ErrorType::none, "", worker_exit::ok},
    {ErrorType::validation, "VALIDATION", worker_exit::validation},
    {ErrorType::model_load, "MODEL_LOAD", worker_exit::model_load},
    {ErrorType::data, "DATA", worker_exit::data},
    {ErrorType::oom, "OOM", worker_exit::oom},
    {ErrorType::timeout, "TIMEOUT", worker_exit::timeout},
    {ErrorType::worker_lost, "WORKER_LOST", -1},
    {ErrorType::internal, "INTERNAL", worker_exit::internal},
    {ErrorType::no_space, "NO_SPACE", worker_exit::no_space},
    {ErrorType::verify, "VERIFY", worker_exit::verify},
}};

}  // namespace

std::string_view job_state_name(JobState s) {
  for (const auto& [state, name] : kStates)
    if (state == s) return name;
  return "UNKNOWN";
}

std::optional<JobState> parse_job_state(std::string_view name) {
  for (const auto& [state, n] : kStates)
    if (n == name) return state;
  return std::nullopt;
}

bool is_terminal(JobState s) { return s == JobState::succeeded || s == JobState::failed || s == JobState::cancelled; }

std::string_view error_type_name(ErrorType t) {
  for (const auto& row : kErrorTypes)
    if (row.type == t) return row.name;
  return "INTERNAL";
}

std::optional<ErrorType> parse_error_type(std::string_view name) {
  for (const auto& row : kErrorTypes)
    if (row.name == name) return row.type;
  return std::nullopt;
}

std::optional<ErrorType> error_type_for_exit(int code) {
  if (code == worker_exit::ok || code == worker_exit::cancelled) return std::nullopt;
  if (code == worker_exit::usage) return ErrorType::validation;
  for (const auto& row : kErrorTypes)
    if (row.exit_code == code && row.type != ErrorType::none) return row.type;
  return std::nullopt;
}

int exit_code_for(ErrorType t) {
  for (const auto& row : kErrorTypes)
    if (row.type == t && row.exit_code >= 0) return row.exit_code;
  return worker_exit::internal;
}

}  // namespace qjobs
