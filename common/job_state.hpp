// Job states and failure types, shared by the server (which stores them) and
// the worker (which reports them through status.json and its exit code).
#pragma once

#include <optional>
#include <string_view>

namespace qjobs {

// QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, with CANCELLING while
// a stop is under way. Terminal states never change.
enum class JobState { queued, running, cancelling, succeeded, failed, cancelled };

std::string_view job_state_name(JobState s);  // "QUEUED", ...
std::optional<JobState> parse_job_state(std::string_view name);
bool is_terminal(JobState s);

// Why a job failed; a field of the job, never a state of its own.
// no_space: a disk or quota filled up (ENOSPC/EDQUOT); the scheduler retries
// it after a pause while attempts remain, since space may be freed.
// verify: the packed output, read by its format's reference loader, is not
// the model the job computed (worker/verify.hpp).
enum class ErrorType { none, validation, model_load, data, oom, timeout, worker_lost, internal, no_space, verify };

std::string_view error_type_name(ErrorType t);  // "" for none, "MODEL_LOAD", ...
std::optional<ErrorType> parse_error_type(std::string_view name);

// Exit codes of `qjobs-worker run`. 0 is success; a code the table does not
// know (a crash, a signal) means the worker ended without a verdict.
namespace worker_exit {
inline constexpr int ok = 0;
inline constexpr int usage = 2;
inline constexpr int validation = 64;
inline constexpr int model_load = 65;
inline constexpr int data = 66;
inline constexpr int oom = 67;
inline constexpr int timeout = 68;
inline constexpr int internal = 69;
inline constexpr int cancelled = 70;
inline constexpr int no_space = 71;
inline constexpr int verify = 72;
}  // namespace worker_exit

// The failure type an exit code stands for; nullopt for success, cancel and
// codes outside the table.
std::optional<ErrorType> error_type_for_exit(int code);
int exit_code_for(ErrorType t);

}  // namespace qjobs
