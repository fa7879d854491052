// One error taxonomy for the whole project: every failure that crosses a
// module boundary is an `Error` carrying an `ErrorKind`. Expected outcomes
// (a job that is not there, an empty queue) are std::optional instead.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace qjobs {

enum class ErrorKind {
  invalid_input,    // the caller sent something malformed or impossible
  not_found,        // a named thing does not exist
  conflict,         // the request contradicts the current state
  io,               // a file, socket or process call failed
  no_space,         // a write failed because a disk or quota is full (ENOSPC, EDQUOT)
  data_corruption,  // stored bytes do not parse as what they claim to be
  oom,              // an allocation failed
  cancelled,        // the work was asked to stop
  internal,         // a bug: an invariant did not hold
};

std::string_view error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Re-throws `e` with `stage` prefixed to its message, keeping the kind, so an
// error gains context as it passes up ("load model: config.json: ...").
[[noreturn]] void rethrow_with_stage(const Error& e, std::string_view stage);

// The kind for a failed system call's errno: no_space for ENOSPC and EDQUOT,
// else io.
ErrorKind error_kind_for_errno(int err);

}  // namespace qjobs
