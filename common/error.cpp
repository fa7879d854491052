#include "common/error.hpp"

#include <cerrno>

namespace qjobs {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_input:
      return "invalid_input";
    case ErrorKind::not_found:
      return "not_found";
    case ErrorKind::conflict:
      return "conflict";
    case ErrorKind::io:
      return "io";
    case ErrorKind::no_space:
      return "no_space";
    case ErrorKind::data_corruption:
      return "data_corruption";
    case ErrorKind::oom:
      return "oom";
    case ErrorKind::cancelled:
      return "cancelled";
    case ErrorKind::internal:
      return "internal";
  }
  return "internal";
}

void rethrow_with_stage(const Error& e, std::string_view stage) {
  throw Error(e.kind(), std::string(stage) + ": " + e.what());
}

}  // namespace qjobs

namespace qjobs {
ErrorKind error_kind_for_errno(int err) { return err == ENOSPC || err == EDQUOT ? ErrorKind::no_space : ErrorKind::io; }
}  // namespace qjobs
