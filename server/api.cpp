#include "server/api.hpp"

#include <openssl/crypto.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include <chrono>
#include <random>

#include <boost/url.hpp>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/job_id.hpp"
#include "spec/job_spec.hpp"
#include "common/strings.hpp"
#include "spec/catalog_docs.hpp"
#include "server/artifacts.hpp"
#include "server/dashboard_assets.hpp"
#include "server/job_folder.hpp"
#include "server/report_compare.hpp"

namespace qjobs::server {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

StringResponse json_response(http::status status, const json& body, unsigned version) {
  StringResponse res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::server, "qjobs");
  // Inputs are validated before they get here; bytes that are still not
  // UTF-8 (a file name on disk, say) are replaced, never a throw.
  res.body() = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  res.prepare_payload();
  return res;
}

// RFC 9110: the auth scheme is case-insensitive and followed by one or more
// spaces.
bool token_matches(const std::set<std::string>& tokens, std::string_view header) {
  constexpr std::string_view scheme = "bearer";
  if (header.size() <= scheme.size() || to_lower(header.substr(0, scheme.size())) != scheme) return false;
  std::size_t i = scheme.size();
  if (header[i] != ' ') return false;
  while (i < header.size() && header[i] == ' ') ++i;
  const std::string given(header.substr(i));
  if (given.empty()) return false;
  bool ok = false;
  for (const auto& t : tokens)  // compare every token in constant time
    if (t.size() == given.size() && CRYPTO_memcmp(t.data(), given.data(), t.size()) == 0) ok = true;
  return ok;
}

std::optional<int64_t> query_int(const std::map<std::string, std::string>& q, const std::string& k) {
  const auto it = q.find(k);
  if (it == q.end()) return std::nullopt;
  return parse_int(it->second);
}

// A boolean query parameter, strictly: absent is false; bare (`?follow`),
// 1 and true are true; 0 and false are false (either case). Anything else
// is nullopt: the handler refuses it rather than guess (`dry_run=yes`
// storing a real job is the failure this prevents).
std::optional<bool> query_bool(const std::map<std::string, std::string>& q, const std::string& k) {
  const auto it = q.find(k);
  if (it == q.end()) return false;
  const std::string v = to_lower(it->second);
  if (v.empty() || v == "1" || v == "true") return true;
  if (v == "0" || v == "false") return false;
  return std::nullopt;
}

std::string bool_problem(const std::map<std::string, std::string>& q, const std::string& k) {
  return k + "=" + excerpt(q.at(k), 40) + " is not a boolean: give " + k + "=1 or " + k + "=true (or 0, false)";
}

}  // namespace

Api::Api(Store& store, Scheduler& scheduler, ApiOptions options)
    : store_(store), scheduler_(scheduler), options_(std::move(options)) {}

fs::path Api::job_dir(const std::string& id) const { return options_.user_data / "jobs" / id; }

bool Api::with_folder(const std::string& id) {
  const auto job = store_.get(id);
  if (!job) return false;
  ensure_job_folder(store_, options_.user_data / "jobs", *job);
  return true;
}

StringResponse Api::error(http::status status, const std::string& message, const std::string& kind, unsigned version,
                          json details) {
  return json_response(status, {{"error", message}, {"kind", kind}, {"details", std::move(details)}}, version);
}

const std::vector<Api::Route>& Api::routes() {
  using V = http::verb;
  static const std::vector<Route> table = {
      {V::post, {"jobs"}, &Api::submit},
      {V::get, {"jobs"}, &Api::list},
      {V::get, {"jobs", "{}"}, &Api::get},
      {V::delete_, {"jobs", "{}"}, &Api::remove},
      {V::get, {"jobs", "{}", "logs"}, &Api::logs},
      {V::get, {"jobs", "{}", "events"}, &Api::events},
      {V::post, {"jobs", "{}", "cancel"}, &Api::cancel},
      {V::get, {"jobs", "{}", "artifacts"}, &Api::artifacts},
      {V::get, {"jobs", "{}", "artifacts", "**"}, &Api::artifact},
      {V::get, {"compare"}, &Api::compare},
      {V::get, {"algorithms"}, &Api::algorithms},
      {V::get, {"algorithms", "{}", "template"}, &Api::algorithm_template},
      {V::get, {"eval-tasks"}, &Api::eval_tasks},
      {V::get, {"recipes"}, &Api::recipes},
      {V::get, {"recipes", "{}"}, &Api::recipe},
      {V::get, {"healthz"}, &Api::healthz},
      {V::get, {"metrics"}, &Api::metrics},
  };
  return table;
}

namespace {

// The dashboard's file for a GET of `target` ("/" or "/ui/NAME"), if any.
const DashboardAsset* dashboard_file(std::string_view target) {
  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  std::string_view name;
  if (target == "/" || target == "/ui" || target == "/ui/") name = "index.html";
  else if (target.starts_with("/ui/")) name = target.substr(4);
  else return nullptr;
  for (const auto& a : dashboard_assets())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace

bool Api::answers_from_memory(const Request& req) {
  // Without tokens or with them: the health check and the dashboard's static
  // files are the routes that need no authentication (the page holds no
  // data; it asks for a token before it calls the API), and the match below
  // must agree with handle().
  if (req.method() != http::verb::get) return false;
  return req.target() == "/healthz" || req.target().starts_with("/healthz?") || dashboard_file(req.target()) != nullptr;
}

ApiResult Api::handle(const Request& req) {
  ++requests_;
  const unsigned v = req.version();
  const auto parsed = boost::urls::parse_origin_form(req.target());
  if (!parsed) return error(http::status::bad_request, "malformed request target", "invalid_input", v);
  std::vector<std::string> segments;
  for (auto s : parsed->segments()) segments.push_back(s);
  Query query;
  for (auto p : parsed->params())
    if (!query.emplace(p.key, p.has_value ? p.value : "").second)
      return error(http::status::bad_request,
                   "query parameter '" + excerpt(std::string(p.key), 40) + "' is given more than once", "invalid_input",
                   v);
  // Decoded path segments and query parameters end up in replies and
  // messages: refuse what is not UTF-8, saying where.
  for (std::size_t i = 0; i < segments.size(); ++i)
    if (!valid_utf8(segments[i]))
      return error(http::status::bad_request,
                   "path segment " + std::to_string(i + 1) + " is not valid UTF-8 once percent-decoded",
                   "invalid_input", v);
  for (const auto& [k, val] : query)
    if (!valid_utf8(k) || !valid_utf8(val))
      return error(http::status::bad_request,
                   "query parameter '" + excerpt(k, 40) + "' is not valid UTF-8 once percent-decoded", "invalid_input",
                   v);

  if (req.method() == http::verb::get)
    if (const auto* asset = dashboard_file(req.target())) {
      StringResponse res{http::status::ok, v};
      res.set(http::field::content_type, asset->content_type);
      res.set(http::field::server, "qjobs");
      res.set(http::field::cache_control, "no-cache");
      res.set("X-Content-Type-Options", "nosniff");
      res.set("Content-Security-Policy",
              "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
              "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'");
      res.body() = std::string(asset->bytes);
      res.prepare_payload();
      return res;
    }

  const bool is_health = segments.size() == 1 && segments[0] == "healthz";
  if (!options_.tokens.empty() && !is_health && !token_matches(options_.tokens, req[http::field::authorization])) {
    auto res = error(http::status::unauthorized, "a valid bearer token is required", "unauthorized", v);
    res.set(http::field::www_authenticate, "Bearer");
    return res;
  }

  bool path_matched = false;
  for (const auto& route : routes()) {
    Params params;
    bool match = true;
    std::size_t i = 0;
    for (; i < route.pattern.size(); ++i) {
      const auto& p = route.pattern[i];
      if (p == "**") {
        if (i >= segments.size()) match = false;
        for (std::size_t j = i; j < segments.size(); ++j) params.push_back(segments[j]);
        i = segments.size();
        break;
      }
      if (i >= segments.size()) {
        match = false;
        break;
      }
      if (p == "{}") params.push_back(segments[i]);
      else if (p != segments[i]) match = false;
      if (!match) break;
    }
    if (!match || (i != segments.size() && route.pattern.back() != "**") ||
        (route.pattern.back() != "**" && segments.size() != route.pattern.size()))
      continue;
    path_matched = true;
    if (route.method != req.method()) continue;
    try {
      // jobs/{id}/...: {id} may also be a job's name (JOB_ID): the newest
      // job of that name, unless a job has that id. A request that changes
      // a job (DELETE, cancel) acts on a name only when it names one job, so
      // a repeated DELETE never removes the next job of that name.
      if (route.pattern.size() >= 2 && route.pattern[0] == "jobs" && route.pattern[1] == "{}") {
        if (route.method != http::verb::get && !store_.get(params[0]) && !looks_like_job_id(params[0])) {
          const auto named = store_.list(std::nullopt, 6, std::nullopt, params[0]);
          if (named.size() > 1) {
            std::string ids;
            for (std::size_t k = 0; k < named.size() && k < 5; ++k) ids += (k ? ", " : "") + named[k].id;
            return error(http::status::conflict,
                         "the name '" + excerpt(params[0], 128) + "' names " +
                             (named.size() > 5 ? "more than 5" : std::to_string(named.size())) + " jobs (" + ids +
                             (named.size() > 5 ? ", ..." : "") + "); give the id of the one you mean",
                         "conflict", v);
          }
        }
        if (const auto job = store_.find(params[0])) params[0] = job->id;
      }
      return route.handler(*this, req, params, query);
    } catch (const Error& e) {
      spdlog::error("{} {}: {}", std::string(req.method_string()), excerpt(req.target(), 200), e.what());
      const bool store_down = e.kind() == ErrorKind::io || e.kind() == ErrorKind::no_space;
      const auto status = e.kind() == ErrorKind::not_found       ? http::status::not_found
                          : e.kind() == ErrorKind::conflict      ? http::status::conflict
                          : e.kind() == ErrorKind::invalid_input ? http::status::bad_request
                          : store_down                           ? http::status::service_unavailable
                                                                 : http::status::internal_server_error;
      if (store_down) {
        ++unavailable_;
        auto res = error(status, std::string("the server cannot store this now: ") + e.what(),
                         std::string(error_kind_name(e.kind())), v);
        res.set(http::field::retry_after, "5");
        return res;
      }
      return error(status, e.what(), std::string(error_kind_name(e.kind())), v);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", std::string(req.method_string()), excerpt(req.target(), 200), e.what());
      return error(http::status::internal_server_error, e.what(), "internal", v);
    }
  }
  if (path_matched)
    return error(http::status::method_not_allowed,
                 "method " + excerpt(req.method_string(), 20) + " is not allowed on " + excerpt(req.target(), 200),
                 "invalid_input", v);
  return error(http::status::not_found, "no such endpoint: " + excerpt(req.target(), 200), "not_found", v);
}

std::string new_job_id() {
  static std::mutex mu;
  static std::random_device dev;  // getrandom(2) on Linux
  uint64_t bits = 0;
  {
    std::lock_guard lock(mu);
    bits = (static_cast<uint64_t>(dev()) << 32) ^ dev();
  }
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d%02d%02d-%02d%02d%02d-%016llx", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned long long>(bits));
  return buf;
}

ApiResult Api::submit(const Request& req, const Params&, const Query& query) {
  const unsigned v = req.version();
  std::optional<std::string> key;
  if (const auto k = req["Idempotency-Key"]; !k.empty()) {
    if (k.size() > 200)
      return error(http::status::bad_request, "Idempotency-Key is longer than 200 characters", "invalid_input", v);
    key = std::string(k);
  }
  // Read before the spec: a dry run that is not one must never store a job.
  const auto dry_run = query_bool(query, "dry_run");
  if (!dry_run) return error(http::status::bad_request, bool_problem(query, "dry_run"), "invalid_input", v);
  const auto parsed = parse_job_spec(req.body(), SpecContext{.local_files = true, .env = &options_.env});
  if (!parsed.spec) {
    json details = json::array();
    for (const auto& i : parsed.issues) details.push_back(to_json(i));
    const auto& first = parsed.issues.front();
    std::string msg = "invalid job spec: " + first.message;
    if (first.line > 0)
      msg += " (line " + std::to_string(first.line) + ", column " + std::to_string(first.column) + ")";
    if (parsed.issues.size() > 1) msg += " and " + std::to_string(parsed.issues.size() - 1) + " more";
    return error(parsed.too_large ? http::status::payload_too_large : http::status::bad_request, msg, "invalid_input",
                 v, details);
  }
  const JobSpec& spec = *parsed.spec;
  const auto& cap = scheduler_.capacity();
  if (cap.gpu_mode() && spec.devices_requested() > cap.size())
    return error(
        http::status::bad_request,
        "CUDA_ID asks for " + std::to_string(spec.devices_requested()) + " devices; this server has " +
            std::to_string(cap.size()),
        "invalid_input", v,
        json::array(
            {{{"path", "CUDA_ID"}, {"line", 0}, {"column", 0}, {"message", "more devices than the server has"}}}));

  // CUDA_ID on a server of CPU slots: the job runs, on the CPU, and says so.
  std::vector<std::string> warnings = spec.warnings;
  if (!cap.gpu_mode() && !cap.slurm_gres && !spec.cuda_ids.empty()) {
    std::string ids;
    for (const int i : spec.cuda_ids) ids += (ids.empty() ? "" : ",") + std::to_string(i);
    warnings.push_back(cap.slurm ? "CUDA_ID \"" + ids +
                                       "\" is ignored: this server submits to Slurm without "
                                       "--slurm-gres gpu, so the job gets no GPU and computes on the CPU"
                                 : "CUDA_ID \"" + ids +
                                       "\" is ignored: this server runs jobs on CPU slots (--slots), "
                                       "so the job computes on the CPU");
  }

  // What the job will cost (spec/estimate.hpp), when its config.json is on
  // this machine: a dry run measures the device's rates the first time.
  json estimate = nullptr;
  if (parsed.model_config) {
    std::string why;
    std::optional<DeviceRates> rates;
    if (options_.rates) rates = options_.rates(*dry_run, &why);
    if (auto e = estimate_job(spec, *parsed.model_config, rates ? &*rates : nullptr, cap.gpu_mode())) {
      if (!rates)
        e->notes.insert(e->notes.begin(),
                        !why.empty()     ? "no time: " + why
                        : options_.rates ? std::string("no time: the device's rates are measured at the first dry run")
                        : cap.slurm      ? std::string("no time: Slurm nodes' rates are not measured from the server")
                                         : std::string("no time: no measured rates"));
      estimate = to_json(*e);
    }
  }

  // A dry run (POST /jobs?dry_run=1, `jobctl validate`): every check a
  // submission makes, the normalized spec, the warnings and the estimate
  // back, nothing stored.
  if (*dry_run)
    return json_response(http::status::ok,
                         json{{"valid", true},
                              {"spec", to_json(spec)},
                              {"warnings", warnings},
                              {"estimate", estimate},
                              {"stored", false}},
                         v);

  NewJob job;
  job.name = spec.job_id;
  job.algorithm = spec.algorithm;
  job.model = spec.model;
  job.priority = spec.priority;
  job.max_attempts = spec.max_attempts;
  job.devices_requested = spec.devices_requested();
  job.timeout_s = spec.timeout_s;
  job.idempotency_key = key;
  job.spec_yaml = req.body();
  job.spec_json = to_json(spec).dump();
  for (std::size_t i = spec.warnings.size(); i < warnings.size(); ++i)
    job.events.emplace_back("warning", json{{"type", "warning"}, {"message", warnings[i]}, {"source", "server"}});
  if (!estimate.is_null())
    job.events.emplace_back("estimate", json{{"type", "estimate"}, {"estimate", estimate}, {"source", "server"}});

  // Only the row is written (with its events): the job's folder is made
  // when it is first needed (job_folder.hpp), so that a group of concurrent
  // submissions costs one commit and no files. An id is new when no row and
  // no folder has it (a clash of 64 random bits is theoretical).
  Store::InsertResult inserted;
  for (int tries = 0;; ++tries) {
    job.id = new_job_id();
    std::error_code ec;
    if (fs::exists(job_dir(job.id), ec) && tries < 8) continue;
    try {
      inserted = store_.insert(job);
      break;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::conflict || tries >= 8) throw;
    }
  }
  if (!inserted.created) {
    auto res = json_response(http::status::ok, job_view(inserted.job), v);
    res.set(http::field::location, "/jobs/" + inserted.job.id);
    return res;
  }
  ++submitted_;
  // Start it now when the scheduler is free and starting is a fork (local
  // slots); sbatch may wait on slurmctld, so a Slurm submission leaves it to
  // the control thread's next pass (within 100 ms), never to this request.
  if (!scheduler_.capacity().slurm) scheduler_.try_tick();
  const auto rec = store_.get(job.id);
  json body = {{"id", job.id},
               {"state", job_state_name(rec ? rec->state : JobState::queued)},
               {"warnings", warnings},
               {"estimate", estimate}};
  auto res = json_response(http::status::created, body, v);
  res.set(http::field::location, "/jobs/" + job.id);
  return res;
}

json Api::job_view(const JobRecord& r) const {
  json j = to_json(r);
  json progress = {{"stage", r.stage}, {"done", 0}, {"total", 0}, {"percent", nullptr}, {"eta_s", nullptr}};
  if (r.state == JobState::running || r.state == JobState::cancelling) {
    std::string problem;
    const auto s = JobDir(job_dir(r.id)).read_worker_status(&problem);
    if (!problem.empty()) scheduler_.report_bad_status(r.id, r.attempts, problem);
    if (s && s->attempt == r.attempts) {
      progress["stage"] = s->stage;
      progress["stage_index"] = s->stage_index;
      progress["stages"] = s->stages;
      progress["done"] = s->done;
      progress["total"] = s->total;
      if (s->total > 0) progress["percent"] = 100.0 * static_cast<double>(s->done) / static_cast<double>(s->total);
      if (s->eta_s >= 0) progress["eta_s"] = s->eta_s;
      j["stage"] = progress["stage"];
      j["metrics"] = s->metrics;
    }
  } else if (r.state == JobState::succeeded) {
    progress["percent"] = 100.0;
  }
  j["progress"] = progress;
  return j;
}

ApiResult Api::list(const Request& req, const Params&, const Query& q) {
  const unsigned v = req.version();
  // state=A or state=A,B: jobs in any of them.
  std::vector<JobState> states;
  if (auto it = q.find("state"); it != q.end() && !it->second.empty()) {
    for (const auto& word : qjobs::split(it->second, ',')) {
      std::string upper = word;
      for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      const auto state = parse_job_state(upper);
      if (!state)
        return error(http::status::bad_request,
                     "unknown state '" + word + "' (QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED)",
                     "invalid_input", v);
      if (std::find(states.begin(), states.end(), *state) == states.end()) states.push_back(*state);
    }
  }
  int64_t limit = 50;
  if (q.count("limit")) {
    const auto l = query_int(q, "limit");
    if (!l || *l < 1 || *l > 1000) return error(http::status::bad_request, "limit must be 1..1000", "invalid_input", v);
    limit = *l;
  }
  std::optional<int64_t> cursor;
  if (q.count("cursor") && !q.at("cursor").empty()) {
    cursor = query_int(q, "cursor");
    if (!cursor) return error(http::status::bad_request, "malformed cursor", "invalid_input", v);
  }
  std::optional<std::string> name;
  if (const auto it = q.find("name"); it != q.end()) name = it->second;
  const auto rows = store_.list(states, static_cast<int>(limit) + 1, cursor, name);
  json jobs = json::array();
  for (std::size_t i = 0; i < rows.size() && i < static_cast<std::size_t>(limit); ++i)
    jobs.push_back(job_view(rows[i]));
  json body = {{"jobs", jobs}, {"next_cursor", nullptr}};
  if (rows.size() > static_cast<std::size_t>(limit))
    body["next_cursor"] = std::to_string(rows[static_cast<std::size_t>(limit) - 1].seq);
  return json_response(http::status::ok, body, v);
}

ApiResult Api::get(const Request& req, const Params& p, const Query&) {
  const auto job = store_.get(p[0]);
  if (!job) return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", req.version());
  json j = job_view(*job);
  j["spec"] = json::parse(job->spec_json, nullptr, false);
  if (j["spec"].is_discarded()) j["spec"] = nullptr;
  j["spec_yaml"] = job->spec_yaml;
  return json_response(http::status::ok, j, req.version());
}

namespace {
constexpr std::size_t kCompareMaxJobs = 50;          // distinct jobs in one /compare
constexpr uint64_t kCompareMaxBytes = 64u << 20;     // report.json bytes one /compare reads from disk
constexpr std::size_t kReportCacheEntries = 512;     // summaries kept (each a few KiB)
constexpr std::size_t kSerialParseBytes = 1u << 20;  // larger reports are parsed one at a time
}  // namespace

std::optional<json> Api::compare_summary(const std::string& id, uint64_t* bytes_read, std::string* problem) {
  problem->clear();
  const JobDir dir(job_dir(id));
  const int fd = open_job_file(dir.root(), "report.json");
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    *problem = errno == EINVAL ? "report.json is not a regular file; not read"
                               : std::string("report.json not read: ") + std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  const bool stated = ::fstat(fd, &st) == 0;
  ::close(fd);
  if (!stated) {
    *problem = "report.json cannot be read";
    return std::nullopt;
  }
  const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  {
    std::lock_guard lock(report_mu_);
    if (const auto it = report_cache_.find(id);
        it != report_cache_.end() && it->second.dev == st.st_dev && it->second.ino == st.st_ino &&
        it->second.size == static_cast<uint64_t>(st.st_size) && it->second.mtime_ns == mtime_ns) {
      it->second.used = ++report_tick_;
      return it->second.summary;
    }
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxReportBytes) {
    *problem = "report.json is " + std::to_string(st.st_size) + " bytes, over the " +
               std::to_string(kMaxReportBytes >> 20) + " MiB compare reads; not read";
    return std::nullopt;
  }
  if (*bytes_read + static_cast<uint64_t>(st.st_size) > kCompareMaxBytes) {
    *problem = "report.json not read: this comparison already read " + std::to_string(*bytes_read >> 20) +
               " MiB of reports (at most " + std::to_string(kCompareMaxBytes >> 20) + " MiB per request)";
    return std::nullopt;
  }
  std::string why;
  const auto text = read_job_file(dir.root(), "report.json", kMaxReportBytes, &why);
  if (!text) {
    *problem = why;
    return std::nullopt;
  }
  *bytes_read += text->size();
  // Parsing holds the text and a summary only; large ones queue so that
  // concurrent requests never hold several at once.
  static std::mutex large_parse;
  std::unique_lock<std::mutex> serial(large_parse, std::defer_lock);
  if (text->size() > kSerialParseBytes) serial.lock();
  auto summary = report_summary(*text, &why);
  if (serial.owns_lock()) serial.unlock();
  if (!summary) {
    *problem = why + "; not read";
    return std::nullopt;
  }
  std::lock_guard lock(report_mu_);
  if (report_cache_.size() >= kReportCacheEntries) {
    auto oldest = report_cache_.begin();
    for (auto it = report_cache_.begin(); it != report_cache_.end(); ++it)
      if (it->second.used < oldest->second.used) oldest = it;
    report_cache_.erase(oldest);
  }
  report_cache_[id] = CachedReport{static_cast<uint64_t>(st.st_dev),
                                   static_cast<uint64_t>(st.st_ino),
                                   static_cast<uint64_t>(st.st_size),
                                   mtime_ns,
                                   *summary,
                                   ++report_tick_};
  return summary;
}

// Side by side: each distinct job once (a repeated id or name is one
// column), at most kCompareMaxJobs, at most kCompareMaxBytes of reports read
// from disk; summaries are cached, so memory per request is bounded by the
// summaries, not by what the job folders hold.
ApiResult Api::compare(const Request& req, const Params&, const Query& q) {
  const unsigned v = req.version();
  const auto it = q.find("ids");
  if (it == q.end() || it->second.empty())
    return error(http::status::bad_request, "ids is required: a comma list of job ids or names", "invalid_input", v);
  std::vector<std::string> refs;
  for (const auto& part : split(it->second, ','))
    if (const auto ref = trim(part); !ref.empty()) refs.emplace_back(ref);
  if (refs.size() > 4 * kCompareMaxJobs)
    return error(http::status::bad_request, "ids lists more than " + std::to_string(4 * kCompareMaxJobs) + " entries",
                 "invalid_input", v);
  std::vector<CompareInput> inputs;
  std::set<std::string> seen;
  uint64_t bytes_read = 0;
  for (const auto& ref : refs) {
    // An id names its job; a name its newest SUCCEEDED job, the one with
    // numbers to compare (issue 31: the newest was a running job, and the
    // table all dashes), else its newest job, which a note says has none.
    auto job = store_.get(ref);
    if (!job) {
      const auto done = store_.list(std::vector<JobState>{JobState::succeeded}, 1, std::nullopt, ref);
      job = done.empty() ? store_.find(ref) : std::optional<JobRecord>(done.front());
    }
    if (!job)
      return error(http::status::not_found, "no job with id or name '" + excerpt(ref, 200) + "'", "not_found", v);
    if (!seen.insert(job->id).second) continue;
    if (inputs.size() == kCompareMaxJobs)
      return error(http::status::bad_request, "at most " + std::to_string(kCompareMaxJobs) + " jobs compare at once",
                   "invalid_input", v);
    CompareInput in{job->id, job->name, std::string(job_state_name(job->state)), nullptr, ""};
    if (auto summary = compare_summary(job->id, &bytes_read, &in.problem)) in.report = std::move(*summary);
    inputs.push_back(std::move(in));
  }
  if (inputs.empty()) return error(http::status::bad_request, "ids names no job", "invalid_input", v);
  return json_response(http::status::ok, compare_reports(inputs), v);
}

ApiResult Api::algorithm_template(const Request& req, const Params& p, const Query& q) {
  const auto* a = find_algorithm(p[0]);
  if (!a || !a->available)
    return error(http::status::not_found, "no algorithm '" + excerpt(p[0], 100) + "'", "not_found", req.version());
  const auto m = q.find("model");
  StringResponse res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/yaml; charset=utf-8");
  res.set(http::field::server, "qjobs");
  res.body() = spec_template(*a, m == q.end() || m->second.empty() ? "examples/kjv-llama" : excerpt(m->second, 500));
  res.prepare_payload();
  return res;
}

ApiResult Api::algorithms(const Request& req, const Params&, const Query&) {
  json list = json::array();
  for (const auto& a : algorithm_catalog())
    if (a.available) list.push_back(algorithm_json(a));
  return json_response(http::status::ok, {{"algorithms", list}}, req.version());
}

namespace {

// A recipe's name: its file name without ".yaml".
std::string recipe_name(const DashboardAsset& f) {
  std::string n(f.name);
  return n.ends_with(".yaml") ? n.substr(0, n.size() - 5) : n;
}

// The value of a top-level "KEY: value" line of a recipe ("" when absent):
// the recipes are the project's own files, written one key per line.
std::string recipe_line(std::string_view text, std::string_view prefix) {
  for (std::size_t at = 0; at < text.size();) {
    const auto end = std::min(text.find('\n', at), text.size());
    const auto line = text.substr(at, end - at);
    if (line.starts_with(prefix)) {
      auto v = std::string(line.substr(prefix.size()));
      if (const auto hash = v.find(" #"); hash != std::string::npos) v.resize(hash);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\r')) v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
    at = end + 1;
  }
  return "";
}

// A recipe's title: the first sentence of its leading "# Recipe: ..."
// comment, which may run over several comment lines.
std::string recipe_title(std::string_view text) {
  std::string para;
  for (std::size_t at = 0; at < text.size();) {
    const auto end = std::min(text.find('\n', at), text.size());
    const auto line = text.substr(at, end - at);
    if (!line.starts_with("#")) break;
    auto words = line.substr(1);
    while (words.starts_with(" ")) words.remove_prefix(1);
    if (!para.empty()) para += ' ';
    para += words;
    at = end + 1;
  }
  if (para.starts_with("Recipe: ")) para.erase(0, 8);
  if (const auto stop = para.find(". "); stop != std::string::npos) para.resize(stop + 1);
  return excerpt(para, 200);
}

}  // namespace

ApiResult Api::recipes(const Request& req, const Params&, const Query&) {
  json list = json::array();
  for (const auto& f : recipe_files())
    list.push_back({{"name", recipe_name(f)},
                    {"title", recipe_title(f.bytes)},
                    {"algorithm", recipe_line(f.bytes, "ALGORITHM:")},
                    {"path", "configs/recipes/" + std::string(f.name)}});
  return json_response(http::status::ok, {{"recipes", list}}, req.version());
}

ApiResult Api::recipe(const Request& req, const Params& p, const Query&) {
  for (const auto& f : recipe_files()) {
    if (recipe_name(f) != p[0]) continue;
    StringResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, f.content_type);
    res.set(http::field::server, "qjobs");
    res.body() = std::string(f.bytes);
    res.prepare_payload();
    return res;
  }
  return error(http::status::not_found, "no recipe '" + excerpt(p[0], 100) + "'", "not_found", req.version());
}

ApiResult Api::eval_tasks(const Request& req, const Params&, const Query&) {
  json list = json::array();
  for (const auto& t : eval_task_catalog()) list.push_back(eval_task_json(t));
  return json_response(http::status::ok, {{"eval_tasks", list}}, req.version());
}

bool Api::job_active(const std::string& id) {
  const auto job = store_.get(id);
  return job && !is_terminal(job->state);
}

ApiResult Api::logs(const Request& req, const Params& p, const Query& q) {
  if (!with_folder(p[0]))
    return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", req.version());
  const auto follow = query_bool(q, "follow");
  if (!follow) return error(http::status::bad_request, bool_problem(q, "follow"), "invalid_input", req.version());
  StreamPlan plan{p[0], job_dir(p[0]), "logs/worker.log", "text/plain; charset=utf-8", *follow, {}};
  if (q.count("tail")) {
    const auto t = query_int(q, "tail");
    if (!t || *t < 0)
      return error(http::status::bad_request, "tail must be a non-negative integer", "invalid_input", req.version());
    plan.tail_lines = *t;
  }
  return plan;
}

ApiResult Api::events(const Request& req, const Params& p, const Query& q) {
  if (!with_folder(p[0]))
    return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", req.version());
  const auto follow = query_bool(q, "follow");
  if (!follow) return error(http::status::bad_request, bool_problem(q, "follow"), "invalid_input", req.version());
  return StreamPlan{p[0], job_dir(p[0]), "events.jsonl", "application/x-ndjson", *follow, {}};
}

ApiResult Api::cancel(const Request& req, const Params& p, const Query&) {
  const auto state = scheduler_.cancel(p[0]);
  if (!state) return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", req.version());
  return json_response(http::status::ok, job_view(*store_.get(p[0])), req.version());
}

ApiResult Api::remove(const Request& req, const Params& p, const Query&) {
  const unsigned v = req.version();
  const auto job = store_.get(p[0]);
  if (!job) return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", v);
  if (!is_terminal(job->state))
    return error(http::status::conflict,
                 "job " + p[0] + " is " + std::string(job_state_name(job->state)) + "; cancel it first", "conflict", v);
  if (!store_.remove(p[0])) return error(http::status::conflict, "job " + p[0] + " changed state", "conflict", v);
  std::error_code ec;
  fs::remove_all(job_dir(p[0]), ec);
  if (ec) spdlog::warn("job {}: removing its folder: {}", p[0], ec.message());
  return json_response(http::status::ok, {{"id", p[0]}, {"deleted", true}}, v);
}

ApiResult Api::artifacts(const Request& req, const Params& p, const Query&) {
  const unsigned v = req.version();
  if (!with_folder(p[0])) return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", v);
  json files = json::array();
  uint64_t total = 0;
  for (const auto& a : list_artifacts(job_dir(p[0]), checksums_)) {
    files.push_back(to_json(a));
    total += a.size;
  }
  return json_response(http::status::ok, {{"id", p[0]}, {"artifacts", files}, {"total_bytes", total}}, v);
}

ApiResult Api::artifact(const Request& req, const Params& p, const Query&) {
  const unsigned v = req.version();
  if (!with_folder(p[0])) return error(http::status::not_found, "no job with id '" + p[0] + "'", "not_found", v);
  const std::vector<std::string> segments(p.begin() + 1, p.end());
  const auto file = resolve_artifact(job_dir(p[0]), segments);
  if (!file) return error(http::status::not_found, "no such artifact in job " + p[0], "not_found", v);
  // Served from the descriptor open_job_file gives: a file swapped for a
  // link or a FIFO after the check above is never opened.
  const int fd = open_job_file(job_dir(p[0]), file->lexically_relative(job_dir(p[0])).generic_string());
  if (fd < 0) return error(http::status::not_found, "no such artifact in job " + p[0], "not_found", v);
  boost::beast::file source;
  source.native_handle(fd);
  boost::beast::error_code ec;
  http::file_body::value_type body;
  body.reset(std::move(source), ec);
  if (ec) return error(http::status::not_found, "cannot open artifact: " + ec.message(), "not_found", v);
  FileResponse res{http::status::ok, v};
  res.set(http::field::content_type, "application/octet-stream");
  res.set(http::field::server, "qjobs");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// Liveness with a word on the store: 200 whenever the process serves, with
// "degraded" while the store cannot write or transitions wait to be stored
// (a restart would not help a full disk; the operator needs to see why).
ApiResult Api::healthz(const Request& req, const Params&, const Query&) {
  const auto store = store_.health();
  const auto sched = scheduler_.health();
  const bool ok = store.writable && sched.unsettled == 0;
  json body = {{"status", ok ? "ok" : "degraded"},
               {"store", {{"writable", store.writable}, {"write_errors", store.write_errors}}},
               {"pending_transitions", sched.unsettled}};
  if (!store.writable) {
    body["store"]["error"] = store.last_error;
    body["store"]["failing_since"] = store.failing_since;
  }
  if (options_.connections)
    body["connections"] = {{"open", options_.connections->open.load()}, {"max", options_.connections->max}};
  return json_response(http::status::ok, body, req.version());
}

ApiResult Api::metrics(const Request& req, const Params&, const Query&) {
  std::string out;
  out += "# HELP qjobs_jobs Jobs in the store by state.\n# TYPE qjobs_jobs gauge\n";
  const auto counts = store_.count_by_state();
  for (const auto s : {JobState::queued, JobState::running, JobState::cancelling, JobState::succeeded, JobState::failed,
                       JobState::cancelled}) {
    const auto it = counts.find(s);
    out += "qjobs_jobs{state=\"" + std::string(job_state_name(s)) + "\"} " +
           std::to_string(it == counts.end() ? 0 : it->second) + "\n";
  }
  const auto queued = counts.count(JobState::queued) ? counts.at(JobState::queued) : 0;
  out += "# HELP qjobs_queue_depth Jobs waiting for capacity.\n# TYPE qjobs_queue_depth gauge\n";
  out += "qjobs_queue_depth " + std::to_string(queued) + "\n";
  out += "# HELP qjobs_devices_busy Devices or slots held by running jobs.\n# TYPE qjobs_devices_busy gauge\n";
  out += "qjobs_devices_busy " + std::to_string(scheduler_.busy_devices()) + "\n";
  out += "# HELP qjobs_devices_total Devices or slots of this server.\n# TYPE qjobs_devices_total gauge\n";
  out += "qjobs_devices_total " + std::to_string(scheduler_.capacity().size()) + "\n";
  out += scheduler_.dispatcher_metrics();
  out +=
      "# HELP qjobs_job_duration_seconds Submission to end of finished jobs.\n# TYPE qjobs_job_duration_seconds "
      "summary\n";
  for (const auto& [state, sc] : store_.durations()) {
    const std::string label = "{state=\"" + std::string(job_state_name(state)) + "\"}";
    out += "qjobs_job_duration_seconds_sum" + label + " " + std::to_string(sc.first) + "\n";
    out += "qjobs_job_duration_seconds_count" + label + " " + std::to_string(sc.second) + "\n";
  }
  out += "# HELP qjobs_http_requests_total Requests handled since start.\n# TYPE qjobs_http_requests_total counter\n";
  out += "qjobs_http_requests_total " + std::to_string(requests_.load()) + "\n";
  out += "# HELP qjobs_jobs_submitted_total Jobs created since start.\n# TYPE qjobs_jobs_submitted_total counter\n";
  out += "qjobs_jobs_submitted_total " + std::to_string(submitted_.load()) + "\n";
  const auto inserts = store_.insert_stats();
  out += "# HELP qjobs_store_inserts_total Jobs stored since start.\n# TYPE qjobs_store_inserts_total counter\n";
  out += "qjobs_store_inserts_total " + std::to_string(inserts.inserts) + "\n";
  out +=
      "# HELP qjobs_store_insert_commits_total Commits (fsyncs) that stored them: concurrent submissions share "
      "one.\n# TYPE qjobs_store_insert_commits_total counter\n";
  out += "qjobs_store_insert_commits_total " + std::to_string(inserts.commits) + "\n";
  const auto store = store_.health();
  const auto sched = scheduler_.health();
  out +=
      "# HELP qjobs_store_writable Whether the last write to the database went through.\n# TYPE qjobs_store_writable "
      "gauge\n";
  out += "qjobs_store_writable " + std::to_string(store.writable ? 1 : 0) + "\n";
  out +=
      "# HELP qjobs_store_write_errors_total Database writes that failed since start.\n# TYPE "
      "qjobs_store_write_errors_total counter\n";
  out += "qjobs_store_write_errors_total " + std::to_string(store.write_errors) + "\n";
  out +=
      "# HELP qjobs_sqlite_memory_bytes Memory SQLite holds (page caches, statements).\n# TYPE "
      "qjobs_sqlite_memory_bytes gauge\n";
  out += "qjobs_sqlite_memory_bytes " + std::to_string(Store::memory_used()) + "\n";
  out +=
      "# HELP qjobs_pending_transitions Ended workers whose new state waits to be stored.\n# TYPE "
      "qjobs_pending_transitions gauge\n";
  out += "qjobs_pending_transitions " + std::to_string(sched.unsettled) + "\n";
  out +=
      "# HELP qjobs_http_unavailable_total Requests answered 503 because the store could not write.\n# TYPE "
      "qjobs_http_unavailable_total counter\n";
  out += "qjobs_http_unavailable_total " + std::to_string(unavailable_.load()) + "\n";
  if (const auto* c = options_.connections) {
    out += "# HELP qjobs_connections_open Connections being served.\n# TYPE qjobs_connections_open gauge\n";
    out += "qjobs_connections_open " + std::to_string(c->open.load()) + "\n";
    out +=
        "# HELP qjobs_connections_refused_total Connections refused at --max-connections.\n# TYPE "
        "qjobs_connections_refused_total counter\n";
    out += "qjobs_connections_refused_total " + std::to_string(c->refused.load()) + "\n";
    out +=
        "# HELP qjobs_connections_evicted_total Idle connections closed at --max-connections to admit a new one.\n# "
        "TYPE qjobs_connections_evicted_total counter\n";
    out += "qjobs_connections_evicted_total " + std::to_string(c->evicted.load()) + "\n";
    out +=
        "# HELP qjobs_accept_errors_total Failed accept() calls (out of descriptors and others).\n# TYPE "
        "qjobs_accept_errors_total counter\n";
    out += "qjobs_accept_errors_total " + std::to_string(c->accept_errors.load()) + "\n";
    out +=
        "# HELP qjobs_http_malformed_total Requests refused with 400 for their HTTP framing.\n# TYPE "
        "qjobs_http_malformed_total counter\n";
    out += "qjobs_http_malformed_total " + std::to_string(c->malformed.load()) + "\n";
  }
  StringResponse res{http::status::ok, req.version()};
  res.set(http::field::content_type, "text/plain; version=0.0.4");
  res.body() = out;
  res.prepare_payload();
  return res;
}

}  // namespace qjobs::server
