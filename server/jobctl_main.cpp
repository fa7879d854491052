// jobctl: a thin client of qjobs-server.
//   jobctl [--server URL] [--token T] [--json] COMMAND ...
// Exit codes: 0 success; 1 the job did not succeed (wait) or the server
// refused the request; 2 usage; 3 the server cannot be reached; 5 `validate`
// found the spec invalid.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "server/artifacts.hpp"
#include "server/http_client.hpp"
#include "server/report_compare.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using qjobs::server::HttpClient;
using qjobs::server::HttpResult;
using qjobs::server::url_encode;

namespace {

struct Options {
  std::string server;
  std::string token;
  bool json_output = false;
};

struct Refused {
  int status;
  json body;
};

json parse_body(const HttpResult& r) {
  auto j = json::parse(r.body, nullptr, false);
  return j.is_discarded() ? json{{"error", r.body}} : j;
}

json call(HttpClient& c, const std::string& method, const std::string& target, const std::string& body = "",
          const std::map<std::string, std::string>& headers = {}) {
  const auto r = c.request(method, target, body, headers);
  if (r.status >= 400) throw Refused{r.status, parse_body(r)};
  return parse_body(r);
}

std::string fmt_eta(const json& eta) {
  if (!eta.is_number()) return "?";
  const auto s = static_cast<long>(eta.get<double>() + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::string progress_line(const json& job) {
  const auto& p = job.value("progress", json::object());
  std::string line = job.value("id", "") + " " + job.value("state", "");
  const std::string stage = p.value("stage", "");
  if (!stage.empty()) line += " " + stage;
  if (p.value("total", 0) > 0)
    line += " " + std::to_string(p.value("done", 0)) + "/" + std::to_string(p.value("total", 0));
  if (p.contains("percent") && p["percent"].is_number()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.0f%%", p["percent"].get<double>());
    line += buf;
  }
  if (p.contains("eta_s") && p["eta_s"].is_number()) line += " ETA " + fmt_eta(p["eta_s"]);
  if (job.value("attempts", 0) > 1) line += " (attempt " + std::to_string(job.value("attempts", 0)) + ")";
  return line;
}

void print_job(const json& job, const Options& o) {
  if (o.json_output) {
    std::cout << job.dump(2) << "\n";
    return;
  }
  std::cout << "id:        " << job.value("id", "") << "\n"
            << "state:     " << job.value("state", "") << "\n"
            << "algorithm: " << job.value("algorithm", "") << "\n"
            << "model:     " << job.value("model", "") << "\n"
            << "attempts:  " << job.value("attempts", 0) << "/" << job.value("max_attempts", 0) << "\n"
            << "progress:  " << progress_line(job) << "\n";
  if (job.contains("handle") && job["handle"].is_string())
    std::cout << "backend:   " << job.value("backend", json("")).get<std::string>() << " ("
              << job["handle"].get<std::string>() << ")\n";
  if (job.contains("error") && job["error"].is_string())
    std::cout << "error:     " << job.value("error_type", json("")).get<std::string>() << ": "
              << job["error"].get<std::string>() << "\n";
  if (job.contains("metrics") && !job["metrics"].empty()) std::cout << "metrics:   " << job["metrics"].dump() << "\n";
}

bool terminal(const std::string& s) { return s == "SUCCEEDED" || s == "FAILED" || s == "CANCELLED"; }

// Polls until the job ends, drawing a progress line; 0 only for SUCCEEDED.
int wait_for(HttpClient& c, const std::string& id, const Options& o) {
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  std::string last;
  json job;
  while (true) {
    job = call(c, "GET", "/jobs/" + url_encode(id));
    const std::string line = progress_line(job);
    if (tty) {
      std::cerr << "\r\033[K" << line << std::flush;
    } else if (line != last && !o.json_output) {
      std::cerr << line << "\n";
    }
    last = line;
    if (terminal(job.value("state", ""))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (tty) std::cerr << "\n";
  if (o.json_output) {
    std::cout << job.dump(2) << "\n";
  } else {
    std::cout << job.value("id", "") << " " << job.value("state", "") << "\n";
    if (job.contains("error") && job["error"].is_string())
      std::cout << "error: " << job.value("error_type", json("")).get<std::string>() << ": "
                << job["error"].get<std::string>() << "\n";
  }
  return job.value("state", "") == "SUCCEEDED" ? 0 : 1;
}

void print_refusal(const Refused& r) {
  std::cerr << "error (HTTP " << r.status << "): " << r.body.value("error", std::string("request refused")) << "\n";
  if (r.body.contains("details") && r.body["details"].is_array())
    for (const auto& d : r.body["details"]) {
      if (!d.is_object()) continue;
      std::cerr << "  " << d.value("path", "") << ":" << d.value("line", 0) << ":" << d.value("column", 0) << ": "
                << d.value("message", "") << "\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jobctl: submit and watch qjobs jobs"};
  app.require_subcommand(1);
  app.fallthrough();  // --server, --token and --json also after the command
  Options o;
  const char* env_server = std::getenv("QJOBS_SERVER");
  const char* env_token = std::getenv("QJOBS_TOKEN");
  o.server = env_server ? env_server : "http://127.0.0.1:8080";
  o.token = env_token ? env_token : "";
  app.add_option("--server", o.server, "server URL (env QJOBS_SERVER)")->capture_default_str();
  app.add_option("--token", o.token, "bearer token (env QJOBS_TOKEN)");
  app.add_flag("--json", o.json_output, "print JSON");

  std::string file, id, state, path, out_dir = ".", idem;
  bool wait = false, follow = false;
  int limit = 50, tail = -1;
  auto* submit = app.add_subcommand("submit", "submit a YAML job spec");
  submit->add_option("file", file, "the spec")->required()->check(CLI::ExistingFile);
  submit->add_flag("--wait", wait, "wait for the job to end; exit 0 only for SUCCEEDED");
  submit->add_flag("--follow", follow, "stream the job's log while waiting");
  submit->add_option("--idempotency-key", idem, "submit at most once for this key");
  auto* validate = app.add_subcommand("validate", "check a YAML job spec as a submission would, storing nothing");
  validate->add_option("file", file, "the spec")->required()->check(CLI::ExistingFile);
  auto* status = app.add_subcommand("status", "show a job");
  status->add_option("id", id)->required();
  auto* list = app.add_subcommand("list", "list jobs, newest first");
  list->add_option("--state", state, "only jobs in this state");
  list->add_option("--limit", limit, "at most this many")->capture_default_str();
  auto* logs = app.add_subcommand("logs", "print a job's log");
  logs->add_option("id", id)->required();
  logs->add_flag("-f,--follow", follow, "keep streaming until the job ends");
  logs->add_option("--tail", tail, "only the last N lines");
  auto* events = app.add_subcommand("events", "print a job's events");
  events->add_option("id", id)->required();
  events->add_flag("-f,--follow", follow, "keep streaming until the job ends");
  auto* cancel = app.add_subcommand("cancel", "cancel a job");
  cancel->add_option("id", id)->required();
  auto* del = app.add_subcommand("delete", "delete a finished job and its files");
  del->add_option("id", id)->required();
  auto* artifacts = app.add_subcommand("artifacts", "list a job's files with sizes and sha256");
  artifacts->add_option("id", id)->required();
  auto* download = app.add_subcommand("download", "download a job's files (all, or one PATH)");
  download->add_option("id", id)->required();
  download->add_option("path", path, "one file, relative to the job directory");
  download->add_option("-o,--output", out_dir, "destination folder")->capture_default_str();
  auto* waitcmd = app.add_subcommand("wait", "wait for a job to end; exit 0 only for SUCCEEDED");
  waitcmd->add_option("id", id)->required();
  auto* report = app.add_subcommand("report", "print a finished job's report (report.md; --json: report.json)");
  report->add_option("id", id)->required();
  std::vector<std::string> ids;
  auto* compare = app.add_subcommand("compare", "one table of size and metrics across jobs (e.g. RTN vs AWQ vs GPTQ)");
  compare->add_option("ids", ids, "job ids")->required()->expected(1, -1);

  CLI11_PARSE(app, argc, argv);

  HttpClient client(o.server, o.token);
  try {
    if (*submit) {
      std::map<std::string, std::string> headers = {{"Content-Type", "application/yaml"}};
      if (!idem.empty()) headers["Idempotency-Key"] = idem;
      const json r = call(client, "POST", "/jobs", qjobs::read_file(file), headers);
      const std::string job_id = r.value("id", "");
      if (o.json_output && !wait && !follow) std::cout << r.dump(2) << "\n";
      else std::cout << job_id << "\n";
      if (r.contains("warnings"))
        for (const auto& w : r["warnings"]) std::cerr << "warning: " << w.get<std::string>() << "\n";
      if (follow) {
        client.stream("/jobs/" + url_encode(job_id) + "/logs?follow=1",
                      [](std::string_view d) { std::cout << d << std::flush; });
      }
      if (wait || follow) return wait_for(client, job_id, o);
      return 0;
    }
    if (*validate) {
      try {
        const json r = call(client, "POST", "/jobs?dry_run=1", qjobs::read_file(file), {{"Content-Type", "application/yaml"}});
        if (o.json_output) {
          std::cout << r.dump(2) << "\n";
        } else {
          const json& spec = r.value("spec", json::object());
          std::cout << "valid: " << spec.value("ALGORITHM", std::string("?")) << " on " << spec.value("MODEL", std::string("?"))
                    << ", export " << spec.value("EXPORT_FORMAT", std::string("?")) << "\n";
        }
        for (const auto& w : r.value("warnings", json::array())) std::cerr << "warning: " << w.get<std::string>() << "\n";
        return 0;
      } catch (const Refused& r) {
        if (r.status != 400 && r.status != 413) throw;
        if (o.json_output) std::cout << r.body.dump(2) << "\n";
        print_refusal(r);
        return 5;
      }
    }
    if (*status) {
      print_job(call(client, "GET", "/jobs/" + url_encode(id)), o);
      return 0;
    }
    if (*list) {
      std::string target = "/jobs?limit=" + std::to_string(limit);
      if (!state.empty()) target += "&state=" + url_encode(state);
      const json r = call(client, "GET", target);
      if (o.json_output) {
        std::cout << r.dump(2) << "\n";
        return 0;
      }
      for (const auto& j : r["jobs"])
        std::printf("%-24s %-10s %-10s %s\n", j.value("id", "").c_str(), j.value("state", "").c_str(),
                    j.value("algorithm", "").c_str(), j.value("model", "").c_str());
      return 0;
    }
    if (*logs || *events) {
      std::string target = "/jobs/" + url_encode(id) + (*logs ? "/logs" : "/events");
      std::string sep = "?";
      if (follow) {
        target += sep + "follow=1";
        sep = "&";
      }
      if (tail >= 0) target += sep + "tail=" + std::to_string(tail);
      std::string first;
      const int code = client.stream(target, [&](std::string_view d) {
        if (first.size() < 4096) first.append(d);
        std::cout << d << std::flush;
      });
      if (code >= 400) {
        std::cout.flush();
        return 1;
      }
      return 0;
    }
    if (*cancel) {
      const json r = call(client, "POST", "/jobs/" + url_encode(id) + "/cancel");
      if (o.json_output) std::cout << r.dump(2) << "\n";
      else std::cout << r.value("id", "") << " " << r.value("state", "") << "\n";
      return 0;
    }
    if (*del) {
      const json r = call(client, "DELETE", "/jobs/" + url_encode(id));
      if (o.json_output) std::cout << r.dump(2) << "\n";
      else std::cout << id << " deleted\n";
      return 0;
    }
    if (*artifacts) {
      const json r = call(client, "GET", "/jobs/" + url_encode(id) + "/artifacts");
      if (o.json_output) {
        std::cout << r.dump(2) << "\n";
        return 0;
      }
      for (const auto& a : r["artifacts"])
        std::printf("%12llu  %s  %s\n", static_cast<unsigned long long>(a.value("size", 0ull)),
                    a.value("sha256", "").c_str(), a.value("path", "").c_str());
      return 0;
    }
    if (*download) {
      std::vector<std::pair<std::string, std::string>> files;  // path, sha256 ("" = unchecked)
      if (!path.empty()) {
        files.push_back({path, ""});
      } else {
        const json r = call(client, "GET", "/jobs/" + url_encode(id) + "/artifacts");
        for (const auto& a : r["artifacts"]) files.push_back({a.value("path", ""), a.value("sha256", "")});
      }
      for (const auto& [p, sha] : files) {
        std::string target = "/jobs/" + url_encode(id) + "/artifacts";
        for (const auto& seg : qjobs::split(p, '/')) target += "/" + url_encode(seg);
        const fs::path dest = fs::path(out_dir) / p;
        const int code = client.download(target, dest);
        if (code != 200) {
          const std::string body = qjobs::read_file(dest);
          fs::remove(dest);
          throw Refused{code, json::parse(body, nullptr, false)};
        }
        if (!sha.empty() && qjobs::server::sha256_file(dest) != sha) {
          std::cerr << "error: " << p << ": sha256 mismatch after download\n";
          return 1;
        }
        if (!o.json_output) std::cout << dest.string() << "\n";
      }
      return 0;
    }
    if (*waitcmd) return wait_for(client, id, o);
    if (*report) {
      const auto r = client.request("GET", "/jobs/" + url_encode(id) + "/artifacts/" + (o.json_output ? "report.json" : "report.md"));
      if (r.status >= 400) throw Refused{r.status, parse_body(r)};
      std::cout << r.body << (r.body.empty() || r.body.back() != '\n' ? "\n" : "");
      return 0;
    }
    if (*compare) {
      std::vector<json> reports;
      for (const auto& j : ids) reports.push_back(call(client, "GET", "/jobs/" + url_encode(j) + "/artifacts/report.json"));
      const json table = qjobs::server::compare_reports(ids, reports);
      if (o.json_output) std::cout << table.dump(2) << "\n";
      else std::cout << qjobs::server::compare_markdown(table);
      return 0;
    }
  } catch (const Refused& r) {
    print_refusal(r);
    return 1;
  } catch (const qjobs::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.kind() == qjobs::ErrorKind::io ? 3 : 1;
  }
  return 2;
}
