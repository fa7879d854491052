// The HTTP API of DESIGN.md as a route table of handlers. A handler takes a
// parsed request and returns what to send; it never touches the socket. Work
// that reads many bytes (hashing artifacts, deleting a job directory) is
// returned as Deferred and run off the event loop; logs and events are
// returned as a StreamPlan that the session carries out.
//
// Errors are JSON {"error": message, "kind": ErrorKind name, "details": [...]}.
// Thread safety: handle() runs on the event loop thread only.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <variant>

#include <boost/beast/http.hpp>

#include "server/scheduler.hpp"
#include "server/store.hpp"

namespace qjobs::server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using StringResponse = http::response<http::string_body>;
using FileResponse = http::response<http::file_body>;

struct Deferred {
  std::function<StringResponse()> work;  // runs on a pool thread; must not use the Store
};

struct StreamPlan {
  std::string job_id;
  std::filesystem::path file;
  std::string content_type;
  bool follow = false;               // keep streaming until the job is terminal
  std::optional<int64_t> tail_lines; // start at the last N lines
};

using ApiResult = std::variant<StringResponse, FileResponse, Deferred, StreamPlan>;

struct ApiOptions {
  std::filesystem::path user_data;
  std::set<std::string> tokens;      // empty: no authentication
  std::size_t body_limit = 1 << 20;  // bytes of a request body
};

class Api {
 public:
  Api(Store& store, Scheduler& scheduler, ApiOptions options);

  ApiResult handle(const Request& req);

  // Whether `job_id` is still able to produce output (not terminal).
  bool job_active(const std::string& job_id);
  std::filesystem::path job_dir(const std::string& id) const;

  static StringResponse error(http::status status, const std::string& message,
                              const std::string& kind, unsigned version,
                              nlohmann::json details = nlohmann::json::array());

 private:
  using Params = std::vector<std::string>;
  using Query = std::map<std::string, std::string>;
  struct Route {
    http::verb method;
    std::vector<std::string> pattern;  // "{}" matches one segment, "**" the rest
    std::function<ApiResult(Api&, const Request&, const Params&, const Query&)> handler;
  };
  static const std::vector<Route>& routes();

  ApiResult submit(const Request& req, const Params&, const Query&);
  ApiResult list(const Request& req, const Params&, const Query& q);
  ApiResult get(const Request& req, const Params& p, const Query&);
  ApiResult logs(const Request& req, const Params& p, const Query& q);
  ApiResult events(const Request& req, const Params& p, const Query& q);
  ApiResult cancel(const Request& req, const Params& p, const Query&);
  ApiResult remove(const Request& req, const Params& p, const Query&);
  ApiResult artifacts(const Request& req, const Params& p, const Query&);
  ApiResult artifact(const Request& req, const Params& p, const Query&);
  ApiResult healthz(const Request& req, const Params&, const Query&);
  ApiResult metrics(const Request& req, const Params&, const Query&);

  nlohmann::json job_view(const JobRecord& r) const;
  std::string new_job_id();

  Store& store_;
  Scheduler& scheduler_;
  ApiOptions options_;
  uint64_t requests_ = 0;
  uint64_t submitted_ = 0;
};

}  // namespace qjobs::server
