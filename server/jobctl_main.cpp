// jobctl: a thin client of qjobs-server.
//   jobctl [--server URL] [--token T] [--json] COMMAND ...
// Wherever a command takes a job id it also takes a job's name (JOB_ID, or
// `submit --name`): the newest job of that name.
// Exit codes (kExit*): 0 success; 1 the job did not succeed (wait) or the
// server refused the request; 2 usage; 3 the server cannot be reached;
// 4 no such job (or file); 5 the spec is invalid (submit, validate).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <yaml-cpp/yaml.h>

#include "spec/algorithm_catalog.hpp"
#include "spec/catalog_docs.hpp"
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

constexpr int kExitOk = 0, kExitFailed = 1, kExitUsage = 2, kExitUnreachable = 3, kExitNotFound = 4, kExitInvalid = 5;

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
  const auto s = std::lround(eta.get<double>());
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
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

void print_refusal(const Refused& r, const Options& o) {
  if (o.json_output) {
    json out = r.body.is_object() ? r.body : json{{"error", r.body}};
    out["status"] = r.status;
    std::cout << out.dump(2) << "\n";
  }
  std::cerr << "error (HTTP " << r.status << "): " << r.body.value("error", std::string("request refused")) << "\n";
  if (r.body.contains("details") && r.body["details"].is_array())
    for (const auto& d : r.body["details"]) {
      if (!d.is_object()) continue;
      std::cerr << "  " << d.value("path", "") << ":" << d.value("line", 0) << ":" << d.value("column", 0) << ": "
                << d.value("message", "") << "\n";
    }
}

int exit_code_for(const Refused& r) {
  if (r.status == 404) return kExitNotFound;
  return kExitFailed;
}

std::string read_spec(const std::string& file) {
  if (file == "-") {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    return text;
  }
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw qjobs::Error(qjobs::ErrorKind::not_found, "no such spec file: " + file);
  return qjobs::read_file(file);
}

// `--set KEY=VALUE` on a spec: KEY is a dotted path (llm.AutoAWQ.W_BIT); at
// each mapping a key that spells the rest of the path literally wins (so
// Nyuntam's dotted keys such as `quant.wgts.dtype` are set where they are),
// missing mappings are created, and VALUE is read as YAML (4 is a number,
// true a boolean, "4" a string).
void set_path(YAML::Node node, const std::vector<std::string>& parts, std::size_t i, const YAML::Node& value) {
  // A list is indexed by number: eval.tasks.0.seqlen=256.
  if (node.IsSequence()) {
    const auto index = qjobs::parse_int(parts[i]);
    if (!index || *index < 0 || static_cast<std::size_t>(*index) >= node.size())
      throw qjobs::Error(qjobs::ErrorKind::invalid_input,
                         "--set: '" + parts[i] + "' is not an index of a list of " + std::to_string(node.size()));
    if (i + 1 == parts.size()) {
      node[static_cast<std::size_t>(*index)] = value;
      return;
    }
    set_path(node[static_cast<std::size_t>(*index)], parts, i + 1, value);
    return;
  }
  std::string rest;
  for (std::size_t k = i; k < parts.size(); ++k) rest += (k > i ? "." : "") + parts[k];
  if (i + 1 == parts.size() || (node.IsMap() && node[rest])) {
    node[rest] = value;
    return;
  }
  YAML::Node child = node[parts[i]];
  if (!child.IsMap() && !child.IsSequence()) {
    node[parts[i]] = YAML::Node(YAML::NodeType::Map);
    child = node[parts[i]];
  }
  set_path(child, parts, i + 1, value);
}

std::string apply_sets(const std::string& text, const std::vector<std::string>& sets, const std::string& name) {
  if (sets.empty() && name.empty()) return text;
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw qjobs::Error(qjobs::ErrorKind::invalid_input,
                       std::string("the spec is not YAML, so --set cannot apply: ") + e.what());
  }
  if (!root.IsMap())
    throw qjobs::Error(qjobs::ErrorKind::invalid_input, "the spec is not a mapping, so --set cannot apply");
  for (const auto& kv : sets) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw qjobs::Error(qjobs::ErrorKind::invalid_input,
                         "--set wants KEY=VALUE (a dotted KEY such as llm.RTN.W_BIT), got '" + kv + "'");
    std::vector<std::string> parts = qjobs::split(kv.substr(0, eq), '.');
    for (const auto& part : parts)
      if (part.empty()) throw qjobs::Error(qjobs::ErrorKind::invalid_input, "--set: empty key segment in '" + kv + "'");
    YAML::Node value;
    try {
      value = YAML::Load(kv.substr(eq + 1));
    } catch (const YAML::Exception&) {
      value = YAML::Node(kv.substr(eq + 1));
    }
    set_path(root, parts, 0, value);
  }
  if (!name.empty()) root["JOB_ID"] = name;
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

std::string fmt_age(double seconds) {
  if (seconds < 0) seconds = 0;
  const auto s = static_cast<long>(seconds);
  char buf[32];
  if (s >= 86400) std::snprintf(buf, sizeof buf, "%ldd", s / 86400);
  else if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh", s / 3600);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm", s / 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

double now_s() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

std::string cell(std::string s, std::size_t width) {
  if (s.size() > width) s = s.substr(0, width - 1) + "~";
  return s;
}

// The job table of `jobctl list`.
std::string list_table(const json& jobs) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-33s %-16s %-10s %-12s %-24s %-14s %-16s %s\n", "ID", "NAME", "STATE", "ALGORITHM",
                "MODEL", "STAGE", "PROGRESS", "AGE");
  out += line;
  const double now = now_s();
  for (const auto& j : jobs) {
    const json& p = j.value("progress", json::object());
    std::string progress = "-";
    if (p.value("percent", json(nullptr)).is_number()) {
      char buf[48];
      std::snprintf(buf, sizeof buf, "%.0f%%", p["percent"].get<double>());
      progress = buf;
      if (p.value("eta_s", json(nullptr)).is_number()) progress += " ETA " + fmt_eta(p["eta_s"]);
    }
    const std::string name = j.value("name", "");
    std::snprintf(line, sizeof line, "%-33s %-16s %-10s %-12s %-24s %-14s %-16s %s\n", j.value("id", "").c_str(),
                  cell(name.empty() ? "-" : name, 16).c_str(), j.value("state", "").c_str(),
                  cell(j.value("algorithm", ""), 12).c_str(), cell(j.value("model", ""), 24).c_str(),
                  cell(j.value("stage", "").empty() ? "-" : j.value("stage", ""), 14).c_str(), progress.c_str(),
                  fmt_age(now - j.value("created_at", now)).c_str());
    out += line;
  }
  return out;
}

// An artifact's sha256, or "" while the server is still computing it.
std::string sha_of(const json& a) {
  const auto it = a.find("sha256");
  return it != a.end() && it->is_string() ? it->get<std::string>() : "";
}

// Every command's option values; each subcommand binds the ones it takes.
struct Args {
  std::string file, id, path, out_dir = ".", idem, name, model = "examples/kjv-llama", algo_name;
  std::vector<std::string> sets, ids, states;
  bool wait = false, follow = false, watch = false, markdown = false;
  int limit = 50, tail = -1;
};

struct Commands {
  CLI::App *submit, *validate, *status, *list, *logs, *events, *cancel, *del, *artifacts, *download, *wait, *report,
      *compare, *algorithms, *init, *tasks;
};

Commands define_commands(CLI::App& app, Args& a) {
  Commands c{};
  c.submit = app.add_subcommand("submit", "submit a YAML job spec (FILE, or - for stdin)");
  c.submit->add_option("file", a.file, "the spec")->required();
  c.submit->add_flag("--wait", a.wait, "wait for the job to end; exit 0 only for SUCCEEDED");
  c.submit->add_flag("--follow", a.follow, "stream the job's log while waiting");
  c.submit->add_option("--idempotency-key", a.idem, "submit at most once for this key");
  c.submit->add_option("--name", a.name, "the job's name (sets JOB_ID)");
  c.submit->add_option("--set", a.sets,
                       "KEY=VALUE: override a key by its dotted path, e.g. llm.RTN.W_BIT=8 (repeatable)");
  c.validate = app.add_subcommand("validate", "check a YAML job spec as a submission would, storing nothing");
  c.validate->add_option("file", a.file, "the spec (or - for stdin)")->required();
  c.validate->add_option("--set", a.sets, "KEY=VALUE overrides, as for submit");
  c.validate->add_option("--name", a.name, "the job's name (sets JOB_ID)");
  c.status = app.add_subcommand("status", "show a job");
  c.status->add_option("id", a.id, "job id or name")->required();
  c.list = app.add_subcommand("list", "list jobs, newest first");
  c.list->add_option("--state", a.states, "only jobs in these states (repeat it, or A,B)")->delimiter(',');
  c.list->add_option("--name", a.name, "only jobs of this name");
  c.list->add_option("--limit", a.limit, "at most this many")->capture_default_str();
  c.list->add_flag("-w,--watch", a.watch, "redraw every 2 s until no listed job is queued or running");
  c.logs = app.add_subcommand("logs", "print a job's log (one line per block while it calibrates)");
  c.logs->add_option("id", a.id, "job id or name")->required();
  c.logs->add_flag("-f,--follow", a.follow, "keep streaming until the job ends");
  c.logs->add_option("--tail", a.tail, "only the last N lines");
  c.events = app.add_subcommand("events", "print a job's events");
  c.events->add_option("id", a.id, "job id or name")->required();
  c.events->add_flag("-f,--follow", a.follow, "keep streaming until the job ends");
  c.cancel = app.add_subcommand("cancel", "cancel a job");
  c.cancel->add_option("id", a.id, "job id or name")->required();
  c.del = app.add_subcommand("delete", "delete a finished job and its files");
  c.del->add_option("id", a.id, "job id or name")->required();
  c.artifacts = app.add_subcommand("artifacts", "list a job's files with sizes and sha256");
  c.artifacts->add_option("id", a.id, "job id or name")->required();
  c.download = app.add_subcommand("download", "download a job's files: all, one file, or a folder such as model/");
  c.download->add_option("id", a.id, "job id or name")->required();
  c.download->add_option("path", a.path, "a file or folder, relative to the job directory");
  c.download->add_option("-o,--output", a.out_dir, "destination folder")->capture_default_str();
  c.wait = app.add_subcommand("wait", "wait for a job to end; exit 0 only for SUCCEEDED");
  c.wait->add_option("id", a.id, "job id or name")->required();
  c.report = app.add_subcommand("report", "print a job's report (report.md; --json: report.json)");
  c.report->add_option("id", a.id, "job id or name")->required();
  c.compare = app.add_subcommand("compare", "jobs side by side, like with like (same model, task and protocol)");
  c.compare->add_option("ids", a.ids, "job ids or names")->required()->expected(1, -1);
  c.algorithms = app.add_subcommand("algorithms", "every algorithm and its keys (types, defaults, meaning)");
  c.algorithms->add_option("name", a.algo_name, "one algorithm");
  c.algorithms->add_flag("--markdown", a.markdown, "the README's spec reference");
  c.tasks = app.add_subcommand("tasks", "every evaluation task type and its keys (types, defaults, meaning)");
  c.tasks->add_option("type", a.algo_name, "one task type");
  c.tasks->add_flag("--markdown", a.markdown, "the README's reference of the tasks");
  c.init = app.add_subcommand("init", "print a commented job spec for ALGORITHM that submits as it is");
  c.init->add_option("algorithm", a.algo_name, "e.g. RTN, AutoAWQ, GPTQ")->required();
  c.init->add_option("--model", a.model, "MODEL of the template")->capture_default_str();
  return c;
}

// `algorithms [NAME]` and `init ALGORITHM`: the catalog, no server needed.
int cmd_catalog(const Args& a, const Options& o, bool init) {
  if (!a.algo_name.empty()) {
    const auto* algo = qjobs::find_algorithm(a.algo_name);
    if (!algo || !algo->available) {
      std::string known;
      for (const auto& x : qjobs::algorithm_catalog())
        if (x.available) known += (known.empty() ? "" : ", ") + x.name;
      std::cerr << "error: no algorithm '" << a.algo_name << "'; known: " << known << "\n";
      return kExitNotFound;
    }
    if (init) {
      std::cout << qjobs::spec_template(*algo, a.model);
      return kExitOk;
    }
    if (o.json_output) {
      std::cout << qjobs::algorithm_json(*algo).dump(2) << "\n";
      return kExitOk;
    }
    const std::string md = qjobs::catalog_markdown();
    const auto start = md.find("### `" + algo->name + "`");
    const auto end = md.find("### `", start + 4);
    std::cout << md.substr(start, end == std::string::npos ? std::string::npos : end - start);
    return kExitOk;
  }
  if (a.markdown) {
    std::cout << qjobs::catalog_markdown();
    return kExitOk;
  }
  if (o.json_output) {
    json all = json::array();
    for (const auto& x : qjobs::algorithm_catalog())
      if (x.available) all.push_back(qjobs::algorithm_json(x));
    std::cout << json{{"algorithms", all}}.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& x : qjobs::algorithm_catalog())
    if (x.available) std::printf("%-12s %s\n", x.name.c_str(), x.description.c_str());
  std::cout
      << "\n`jobctl algorithms NAME` lists an algorithm's keys; `jobctl init NAME` prints a spec to start from.\n";
  return kExitOk;
}

// `tasks [TYPE]`: the evaluation tasks' rows, no server needed.
int cmd_tasks(const Args& a, const Options& o) {
  std::vector<const qjobs::EvalTaskInfo*> rows;
  for (const auto& t : qjobs::eval_task_catalog())
    if (a.algo_name.empty() || t.type == a.algo_name) rows.push_back(&t);
  if (rows.empty()) {
    std::cerr << "error: no eval task type '" << a.algo_name << "'; known: " << qjobs::eval_task_types_text() << "\n";
    return kExitNotFound;
  }
  if (o.json_output) {
    json list = json::array();
    for (const auto* t : rows) list.push_back(qjobs::eval_task_json(*t));
    std::cout << json{{"eval_tasks", list}}.dump(2) << "\n";
    return kExitOk;
  }
  const std::string md = qjobs::eval_tasks_markdown();
  if (a.markdown) {
    std::cout << md;
    return kExitOk;
  }
  if (a.algo_name.empty()) {
    for (const auto* t : rows) std::printf("%-14s %s\n", t->type.c_str(), t->description.c_str());
    std::cout << "\n`jobctl tasks TYPE` lists a task's keys, the data it reads and what it reports.\n";
    return kExitOk;
  }
  const auto start = md.find("### `type: " + rows[0]->type + "`");
  const auto end = md.find("### `type: ", start + 4);
  std::cout << md.substr(start, end == std::string::npos ? std::string::npos : end - start);
  return kExitOk;
}

std::string fmt_bytes(const json& b) {
  const double v = b.is_number() ? b.get<double>() : 0.0;
  char buf[32];
  const double mib = v / (1024.0 * 1024);
  if (mib >= 1024) std::snprintf(buf, sizeof buf, "%.1f GiB", mib / 1024);
  else if (mib >= 10) std::snprintf(buf, sizeof buf, "%.0f MiB", mib);
  else if (mib >= 1) std::snprintf(buf, sizeof buf, "%.1f MiB", mib);
  else std::snprintf(buf, sizeof buf, "%.0f KiB", v / 1024);
  return buf;
}

// The dry run's estimate (spec/estimate.hpp) in a few lines.
std::string estimate_text(const json& e) {
  std::string out = "estimate:";
  if (e.value("seconds", json(nullptr)).is_number()) {
    out += " " + fmt_eta(e["seconds"]);
    const auto& r = e.value("rates", json::object());
    if (r.is_object() && r.contains("gemm_gflops") && r["gemm_gflops"].is_number()) {
      char rate[64];
      std::snprintf(rate, sizeof rate, "%.0f", r["gemm_gflops"].get<double>());
      out += " on " + r.value("device", std::string("?")) + " (float32 GEMM " + rate + " GFLOP/s)";
    }
    out += ",";
  }
  out += " host memory " + fmt_bytes(e["host_bytes"]);
  if (e.value("device_bytes", 0) > 0) out += ", device memory " + fmt_bytes(e["device_bytes"]);
  out += ", disk " + fmt_bytes(e["disk_bytes"]) + " (output " + fmt_bytes(e["output_bytes"]) + ", original " +
         fmt_bytes(e["original_bytes"]) + ")\n";
  for (const auto& s : e.value("stages", json::array()))
    if (s.value("seconds", json(nullptr)).is_number())
      out += "  " + s.value("name", std::string("?")) + ": " + fmt_eta(s["seconds"]) + "\n";
  for (const auto& n : e.value("notes", json::array()))
    if (n.is_string()) out += "  note: " + n.get<std::string>() + "\n";
  return out;
}

int cmd_submit(HttpClient& client, const Args& a, const Options& o) {
  std::map<std::string, std::string> headers = {{"Content-Type", "application/yaml"}};
  if (!a.idem.empty()) headers["Idempotency-Key"] = a.idem;
  json r;
  try {
    r = call(client, "POST", "/jobs", apply_sets(read_spec(a.file), a.sets, a.name), headers);
  } catch (const Refused& bad) {
    if (bad.status != 400 && bad.status != 413) throw;
    print_refusal(bad, o);
    return kExitInvalid;
  }
  const std::string job_id = r.value("id", "");
  if (o.json_output && !a.wait && !a.follow) std::cout << r.dump(2) << "\n";
  else std::cout << job_id << "\n";
  if (r.contains("warnings"))
    for (const auto& w : r["warnings"]) std::cerr << "warning: " << w.get<std::string>() << "\n";
  if (const auto& e = r.value("estimate", json(nullptr)); e.is_object() && !o.json_output)
    std::cerr << estimate_text(e);
  if (a.follow) {
    client.stream("/jobs/" + url_encode(job_id) + "/logs?follow=1",
                  [](std::string_view d) { std::cout << d << std::flush; });
  }
  if (a.wait || a.follow) return wait_for(client, job_id, o);
  return kExitOk;
}

int cmd_validate(HttpClient& client, const Args& a, const Options& o) {
  try {
    const json r = call(client, "POST", "/jobs?dry_run=1", apply_sets(read_spec(a.file), a.sets, a.name),
                        {{"Content-Type", "application/yaml"}});
    if (o.json_output) {
      std::cout << r.dump(2) << "\n";
    } else {
      const json& spec = r.value("spec", json::object());
      std::cout << "valid: " << spec.value("ALGORITHM", std::string("?")) << " on "
                << spec.value("MODEL", std::string("?")) << ", export " << spec.value("EXPORT_FORMAT", std::string("?"))
                << "\n";
      if (const auto& e = r.value("estimate", json(nullptr)); e.is_object()) std::cout << estimate_text(e);
    }
    for (const auto& w : r.value("warnings", json::array())) std::cerr << "warning: " << w.get<std::string>() << "\n";
    return kExitOk;
  } catch (const Refused& r) {
    if (r.status != 400 && r.status != 413) throw;
    print_refusal(r, o);
    return kExitInvalid;
  }
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ",") + w;
  return out;
}

int cmd_list(HttpClient& client, const Args& a, const Options& o) {
  std::string target = "/jobs?limit=" + std::to_string(a.limit);
  if (!a.states.empty()) target += "&state=" + url_encode(joined(a.states));
  if (!a.name.empty()) target += "&name=" + url_encode(a.name);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  std::string shown;  // into a file or pipe, --watch prints a table only when a job's state or progress moved
  for (int round = 0;; ++round) {
    const json r = call(client, "GET", target);
    std::string moved;
    for (const auto& j : r["jobs"]) {
      const auto& p = j.value("progress", json::object());
      moved += j.value("id", "") + j.value("state", "") + p.value("stage", "") + std::to_string(p.value("done", 0)) +
               "/" + std::to_string(p.value("total", 0)) + ";";
    }
    const bool print = !a.watch || tty || moved != shown;
    shown = moved;
    if (print && o.json_output) {
      std::cout << r.dump(2) << "\n";
    } else if (print) {
      if (a.watch && tty) std::cout << "\033[H\033[2J";
      else if (a.watch && round > 0) std::cout << "\n";
      std::cout << list_table(r["jobs"]) << std::flush;
    }
    if (!a.watch) return kExitOk;
    bool active = false;
    for (const auto& j : r["jobs"]) active = active || !terminal(j.value("state", ""));
    if (!active) return kExitOk;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

// `logs` and `events`: one stream, of the job the id or name means now.
int cmd_stream(HttpClient& client, const Args& a, const std::string& what) {
  // The id may be a name: resolve it once, so a newer job of that name
  // starting meanwhile does not switch streams.
  const std::string job_id = call(client, "GET", "/jobs/" + url_encode(a.id)).value("id", a.id);
  std::string target = "/jobs/" + url_encode(job_id) + "/" + what;
  std::string sep = "?";
  if (a.follow) {
    target += sep + "follow=1";
    sep = "&";
  }
  if (a.tail >= 0) target += sep + "tail=" + std::to_string(a.tail);
  const int code = client.stream(target, [&](std::string_view d) { std::cout << d << std::flush; });
  if (code >= 400) {
    std::cout.flush();
    return code == 404 ? kExitNotFound : kExitFailed;
  }
  if (!a.follow) return kExitOk;
  // A followed stream ends with its job: exit as `wait` would (1 unless it
  // succeeded), saying how it ended.
  const json job = call(client, "GET", "/jobs/" + url_encode(job_id));
  const std::string state = job.value("state", "");
  if (state == "SUCCEEDED") return kExitOk;
  std::cerr << job_id << " " << state;
  if (job.contains("error") && job["error"].is_string())
    std::cerr << ": " << job.value("error_type", json("")).get<std::string>() << ": "
              << job["error"].get<std::string>();
  std::cerr << "\n";
  return kExitFailed;
}

// `cancel` and `delete`: one request, its answer in a line.
int cmd_change(HttpClient& client, const Args& a, const Options& o, bool cancel) {
  const json r = cancel ? call(client, "POST", "/jobs/" + url_encode(a.id) + "/cancel")
                        : call(client, "DELETE", "/jobs/" + url_encode(a.id));
  if (o.json_output) std::cout << r.dump(2) << "\n";
  else if (cancel) std::cout << r.value("id", "") << " " << r.value("state", "") << "\n";
  else std::cout << r.value("id", a.id) << " deleted\n";
  return kExitOk;
}

int cmd_artifacts(HttpClient& client, const Args& a, const Options& o) {
  const json r = call(client, "GET", "/jobs/" + url_encode(a.id) + "/artifacts");
  if (o.json_output) {
    std::cout << r.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& f : r["artifacts"])
    std::printf("%12llu  %-64s  %s\n", static_cast<unsigned long long>(f.value("size", 0ull)),
                sha_of(f).empty() ? "(checksum being computed)" : sha_of(f).c_str(), f.value("path", "").c_str());
  return kExitOk;
}

using FileSums = std::vector<std::pair<std::string, std::string>>;  // path, sha256 ("" = not yet known)

// A large file's checksum is computed by the server in the background: the
// files downloaded before it was known are checked once it is.
int check_late_sums(HttpClient& client, const std::string& job_id, const FileSums& downloaded,
                    const std::string& out_dir) {
  FileSums files = downloaded;  // each sum filled in as the server has it
  for (int round = 0; round < 3600; ++round) {
    bool unchecked = false;
    for (const auto& f : files) unchecked = unchecked || f.second.empty();
    if (!unchecked) break;
    if (round > 0) std::this_thread::sleep_for(std::chrono::seconds(1));
    const json again = call(client, "GET", "/jobs/" + url_encode(job_id) + "/artifacts");
    for (auto& [p, sha] : files) {
      if (!sha.empty()) continue;
      for (const auto& f : again["artifacts"])
        if (f.value("path", "") == p) sha = sha_of(f);
      if (sha.empty()) continue;
      if (qjobs::server::sha256_file(fs::path(out_dir) / p) != sha) {
        std::cerr << "error: " << p << ": sha256 mismatch after download\n";
        return kExitFailed;
      }
    }
  }
  return kExitOk;
}

int cmd_download(HttpClient& client, const Args& a, const Options& o) {
  const std::string job_id = call(client, "GET", "/jobs/" + url_encode(a.id)).value("id", a.id);
  FileSums files;
  const json r = call(client, "GET", "/jobs/" + url_encode(job_id) + "/artifacts");
  std::string folder = a.path;
  while (!folder.empty() && folder.back() == '/') folder.pop_back();
  for (const auto& f : r["artifacts"]) {
    const std::string p = f.value("path", "");
    if (a.path.empty() || p == a.path || (!folder.empty() && p.rfind(folder + "/", 0) == 0))
      files.push_back({p, sha_of(f)});
  }
  if (files.empty()) {
    std::cerr << "error: job " << job_id << " has no file or folder '" << a.path << "'\n";
    return kExitNotFound;
  }
  for (const auto& [p, sha] : files) {
    std::string target = "/jobs/" + url_encode(job_id) + "/artifacts";
    for (const auto& seg : qjobs::split(p, '/')) target += "/" + url_encode(seg);
    const fs::path dest = fs::path(a.out_dir) / p;
    const int code = client.download(target, dest);
    if (code != 200) {
      const std::string body = qjobs::read_file(dest);
      fs::remove(dest);
      throw Refused{code, json::parse(body, nullptr, false)};
    }
    if (!sha.empty() && qjobs::server::sha256_file(dest) != sha) {
      std::cerr << "error: " << p << ": sha256 mismatch after download\n";
      return kExitFailed;
    }
    if (!o.json_output) std::cout << dest.string() << "\n";
  }
  return check_late_sums(client, job_id, files, a.out_dir);
}

int cmd_report(HttpClient& client, const Args& a, const Options& o) {
  const auto r = client.request(
      "GET", "/jobs/" + url_encode(a.id) + "/artifacts/" + (o.json_output ? "report.json" : "report.md"));
  if (r.status >= 400) throw Refused{r.status, parse_body(r)};
  std::cout << r.body << (r.body.empty() || r.body.back() != '\n' ? "\n" : "");
  return kExitOk;
}

int cmd_compare(HttpClient& client, const Args& a, const Options& o) {
  const json table = call(client, "GET", "/compare?ids=" + url_encode(joined(a.ids)));
  if (o.json_output) std::cout << table.dump(2) << "\n";
  else std::cout << qjobs::server::compare_markdown(table);
  // Nothing to compare (every job still running, or without a report): not a success.
  const auto& cols = table.value("columns", json::array());
  if (std::none_of(cols.begin(), cols.end(), [](const json& c) { return c.value("label", "?") != "?"; })) {
    std::cerr << "error: none of the jobs has a report to compare yet\n";
    return kExitFailed;
  }
  return kExitOk;
}

// The command the user named, with the server's refusals and errors turned
// into the exit codes above.
int run_server_command(const Commands& c, const Args& a, const Options& o) {
  HttpClient client(o.server, o.token);
  try {
    if (*c.submit) return cmd_submit(client, a, o);
    if (*c.validate) return cmd_validate(client, a, o);
    if (*c.status) {
      print_job(call(client, "GET", "/jobs/" + url_encode(a.id)), o);
      return kExitOk;
    }
    if (*c.list) return cmd_list(client, a, o);
    if (*c.logs) return cmd_stream(client, a, "logs");
    if (*c.events) return cmd_stream(client, a, "events");
    if (*c.cancel || *c.del) return cmd_change(client, a, o, c.cancel->parsed());
    if (*c.artifacts) return cmd_artifacts(client, a, o);
    if (*c.download) return cmd_download(client, a, o);
    if (*c.wait) return wait_for(client, a.id, o);
    if (*c.report) return cmd_report(client, a, o);
    if (*c.compare) return cmd_compare(client, a, o);
  } catch (const Refused& r) {
    print_refusal(r, o);
    return exit_code_for(r);
  } catch (const qjobs::Error& e) {
    if (o.json_output)
      std::cout << json{{"error", e.what()}, {"kind", qjobs::error_kind_name(e.kind())}}.dump(2) << "\n";
    std::cerr << "error: " << e.what() << "\n";
    if (e.kind() == qjobs::ErrorKind::invalid_input) return kExitUsage;
    if (e.kind() == qjobs::ErrorKind::not_found) return kExitNotFound;
    return e.kind() == qjobs::ErrorKind::io ? kExitUnreachable : kExitFailed;
  }
  return kExitUsage;
}

// The first word that should name a command but names none, and the
// command meant when one is near (`jobctl stat x`: `status`).
std::optional<std::string> unknown_command(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> names;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  for (int i = 1; i < argc; ++i) {
    const std::string w = argv[i];
    if (w == "--server" || w == "--token") {
      ++i;  // its value
      continue;
    }
    if (w.starts_with("-")) continue;
    if (std::find(names.begin(), names.end(), w) != names.end()) return std::nullopt;
    std::vector<std::string> prefixed;
    for (const auto& n : names)
      if (n.starts_with(w)) prefixed.push_back(n);
    const auto near = prefixed.size() == 1 ? std::optional(prefixed[0]) : qjobs::closest_name(w, names);
    return "unknown command '" + w + "'" + (near ? "; did you mean '" + *near + "'?" : "") +
           "\nRun `jobctl --help` for the commands.";
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "jobctl: submit and watch qjobs jobs.\n"
      "Exit codes: 0 ok, 1 job failed or request refused, 2 usage, 3 server unreachable, 4 not found, 5 invalid spec",
      "jobctl"};
  app.require_subcommand(1);
  app.fallthrough();  // --server, --token and --json also after the command
  Options o;
  const char* env_server = std::getenv("QJOBS_SERVER");
  const char* env_token = std::getenv("QJOBS_TOKEN");
  o.server = env_server ? env_server : "http://127.0.0.1:8080";
  o.token = env_token ? env_token : "";
  app.add_option("--server", o.server, "server URL (env QJOBS_SERVER)")->capture_default_str();
  app.add_option("--token", o.token, "bearer token (env QJOBS_TOKEN)");
  app.add_flag("--json", o.json_output, "print JSON (errors too, on stdout)");
  Args args;
  const Commands commands = define_commands(app, args);

  if (argc <= 1) {
    std::cerr << app.help();
    return kExitUsage;
  }
  if (const auto unknown = unknown_command(app, argc, argv)) {
    std::cerr << "error: " << *unknown << "\n";
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (*commands.algorithms || *commands.init) return cmd_catalog(args, o, commands.init->parsed());
  if (*commands.tasks) return cmd_tasks(args, o);
  return run_server_command(commands, args, o);
}
