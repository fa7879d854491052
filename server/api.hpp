// The HTTP API of DESIGN.md as a route table of handlers. A handler takes a
// parsed request and returns what to send; it never touches the socket. The
// HTTP server runs handle() on a pool of worker threads, never on its I/O
// thread, since handlers read and write the store and the job directories;
// logs and events are returned as a StreamPlan that the session carries out.
//
// Errors are JSON {"error": message, "kind": ErrorKind name, "details": [...]}.
// Everything that reaches a reply is valid UTF-8: a request target or body
// that is not is refused with 400; anything else is escaped on the way out.
// A store that cannot write answers 503 with Retry-After.
// Thread safety: handle() may run on several threads at once.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <variant>

#include <boost/beast/http.hpp>

#include "common/environment.hpp"
#include "spec/estimate.hpp"
#include "server/artifacts.hpp"
#include "server/scheduler.hpp"
#include "server/store.hpp"

namespace qjobs::server {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using StringResponse = http::response<http::string_body>;
using FileResponse = http::response<http::file_body>;

// Counters the HTTP front end keeps and the API reports (/healthz, /metrics).
struct ConnectionStats {
  std::atomic<int64_t> open{0};            // connections being served now
  std::atomic<uint64_t> refused{0};        // turned away at --max-connections
  std::atomic<uint64_t> evicted{0};        // waiting (idle) connections closed at the cap for a new one
  std::atomic<uint64_t> accept_errors{0};  // accept() failures (EMFILE, ENFILE, ...)
  std::atomic<uint64_t> malformed{0};      // requests answered 400 for their framing
  int64_t max = 0;                         // --max-connections
};

struct StreamPlan {
  std::string job_id;
  std::filesystem::path job_root;  // the job's folder
  std::string file;                // relative to job_root, opened with open_job_file
  std::string content_type;
  bool follow = false;                // keep streaming until the job is terminal
  std::optional<int64_t> tail_lines;  // start at the last N lines
};

using ApiResult = std::variant<StringResponse, FileResponse, StreamPlan>;

struct ApiOptions {
  std::filesystem::path user_data;
  std::set<std::string> tokens;                  // empty: no authentication
  std::size_t body_limit = 1 << 20;              // bytes of a request body
  const ConnectionStats* connections = nullptr;  // reported when set
  Environment env;                               // the data root and hub caches submissions are checked against
  // The rates of the device local jobs run on (server/device_rates.hpp),
  // for the estimate of a dry run; `measure` false: only rates already
  // known (a submission never waits for a measurement). Null: no rates
  // (Slurm: its nodes are not measured from here).
  std::function<std::optional<DeviceRates>(bool measure, std::string* why)> rates;
};

class Api {
 public:
  Api(Store& store, Scheduler& scheduler, ApiOptions options);

  ApiResult handle(const Request& req);
  // Whether handle() answers `req` from memory alone (GET /healthz: counters
  // and flags, no store or disk access), so it may run on the I/O thread.
  static bool answers_from_memory(const Request& req);

  // Whether `job_id` is still able to produce output (not terminal).
  bool job_active(const std::string& job_id);
  std::filesystem::path job_dir(const std::string& id) const;

  static StringResponse error(http::status status, const std::string& message, const std::string& kind,
                              unsigned version, nlohmann::json details = nlohmann::json::array());

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
  ApiResult compare(const Request& req, const Params&, const Query& q);
  ApiResult algorithms(const Request& req, const Params&, const Query&);
  ApiResult algorithm_template(const Request& req, const Params& p, const Query& q);
  ApiResult eval_tasks(const Request& req, const Params&, const Query&);
  // The shipped recipes (configs/recipes/, embedded): their names, titles
  // and algorithms, and one recipe's YAML as the file has it.
  ApiResult recipes(const Request& req, const Params&, const Query&);
  ApiResult recipe(const Request& req, const Params& p, const Query&);
  ApiResult healthz(const Request& req, const Params&, const Query&);
  ApiResult metrics(const Request& req, const Params&, const Query&);

  nlohmann::json job_view(const JobRecord& r) const;
  // Whether job `id` exists; when it does, its folder does too (made now
  // for a queued job that has none: job_folder.hpp).
  bool with_folder(const std::string& id);
  // report.json's compare summary for job `id`, from the cache when the file
  // is the one read before (same device, inode, size and mtime). Adds the
  // bytes it read from disk to *bytes_read; with *problem set when refused.
  std::optional<nlohmann::json> compare_summary(const std::string& id, uint64_t* bytes_read, std::string* problem);

  struct CachedReport {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    nlohmann::json summary;
    uint64_t used = 0;  // recency tick for eviction
  };
  ChecksumCache checksums_;  // artifact sha256s, hashed off the request threads
  std::mutex report_mu_;
  std::map<std::string, CachedReport> report_cache_;  // job id -> summary; at most kReportCacheEntries
  uint64_t report_tick_ = 0;

  Store& store_;
  Scheduler& scheduler_;
  ApiOptions options_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> submitted_{0};
  std::atomic<uint64_t> unavailable_{0};  // 503s for a store that could not write
};

// A new job id: UTC date and time, then 64 bits from the system's CSPRNG
// ("20261201-203000-9f3c2a71d04be815"), so two servers or two requests in
// one second do not collide; submission still creates the folder
// exclusively and retries on the (theoretical) clash.
std::string new_job_id();

}  // namespace qjobs::server
