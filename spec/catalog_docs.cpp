#include "spec/catalog_docs.hpp"

#include <cmath>
#include <cstdio>

namespace qjobs {
using nlohmann::json;

namespace {

std::string bound(double v) {
  char buf[32];
  if (std::floor(v) == v && std::fabs(v) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// "integer", not the validator's "an integer".
std::string type_name(ParamType t) {
  std::string n(param_type_name(t));
  if (n.rfind("an ", 0) == 0) return n.substr(3);
  if (n.rfind("a ", 0) == 0) return n.substr(2);
  return n;
}

bool has_min(const ParamSpec& p) { return p.min > -1e299; }
bool has_max(const ParamSpec& p) { return p.max < 1e299; }

std::string allowed(const ParamSpec& p) {
  if (!p.choices.empty()) {
    std::string s;
    for (const auto& c : p.choices) s += (s.empty() ? "" : ", ") + c;
    return s;
  }
  if ((p.type == ParamType::integer || p.type == ParamType::number) && (has_min(p) || has_max(p)))
    return (has_min(p) ? bound(p.min) : "") + ".." + (has_max(p) ? bound(p.max) : "");
  return "";
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

void md_rows(const std::vector<ParamSpec>& params, const std::string& prefix, std::string& md) {
  for (const auto& p : params) {
    const std::string name = prefix + p.name;
    const std::string def = p.default_value.is_null() ? "" : "`" + p.default_value.dump() + "`";
    const std::string allow = allowed(p);
    md += "| `" + name + "` | " + type_name(p.type) + " | " + def + " | " + md_cell(allow.empty() ? "" : allow) +
          " | " + md_cell(p.description) + " |\n";
    if (p.type == ParamType::section) md_rows(p.children, name + ".", md);
    if (p.type == ParamType::section_list) md_rows(p.children, name + "[].", md);
  }
}

std::string yaml_value(const json& v) {
  if (v.is_string()) return json(v).dump();  // a JSON string is a YAML string
  return v.dump();
}

// Nested sections are written with Nyuntam's dotted keys (quant.wgts.dtype),
// which the spec accepts wherever it accepts the nested form.
void yaml_params(const std::vector<ParamSpec>& params, const std::string& indent, const std::string& prefix,
                 std::string& out) {
  for (const auto& p : params) {
    const std::string name = prefix + p.name;
    std::string comment = p.description;
    const std::string allow = allowed(p);
    if (!allow.empty()) comment += " [" + allow + "]";
    if (p.type == ParamType::section) {
      yaml_params(p.children, indent, name + ".", out);
      continue;
    }
    if (p.type == ParamType::section_list || p.default_value.is_null()) {
      out += indent + "# " + name + ": (" + type_name(p.type) + ") " + comment + "\n";
      continue;
    }
    out += indent + name + ": " + yaml_value(p.default_value) + "  # " + comment + "\n";
  }
}

}  // namespace

json param_json(const ParamSpec& p) {
  json j = {
      {"name", p.name}, {"type", type_name(p.type)}, {"description", p.description}, {"default", p.default_value}};
  if (has_min(p)) j["min"] = p.min;
  if (has_max(p)) j["max"] = p.max;
  if (!p.choices.empty()) j["choices"] = p.choices;
  if (!p.children.empty()) {
    j["keys"] = json::array();
    for (const auto& c : p.children) j["keys"].push_back(param_json(c));
  }
  return j;
}

json algorithm_json(const AlgorithmInfo& a) {
  json params = json::array();
  for (const auto& p : a.params) params.push_back(param_json(p));
  json j = {{"name", a.name}, {"description", a.description}, {"available", a.available}, {"params", params}};
  if (a.calib_samples > 0) j["calibration"] = {{"n_samples", a.calib_samples}, {"seqlen", a.calib_seqlen}};
  return j;
}

std::string catalog_markdown() {
  std::string md;
  for (const auto& a : algorithm_catalog()) {
    if (!a.available) continue;
    md += "### `" + a.name + "`\n\n" + a.description + ".";
    const std::string tokens = std::to_string(a.calib_samples) + " x " + std::to_string(a.calib_seqlen) + " tokens";
    if (a.calib_samples > 0 && a.needs_data && !a.needs_data(nlohmann::json::object()))
      md += " Needs no calibration data at its defaults; where its keys make it calibrate, on " + tokens +
            " unless `calibration:` says otherwise.";
    else if (a.calib_samples > 0) md += " Calibrates on " + tokens + " unless `calibration:` says otherwise.";
    else if (a.name != "Evaluate") md += " Needs no calibration data.";
    md += "\n\n";
    if (a.params.empty()) {
      md += "No keys under `llm." + a.name + "`.\n\n";
      continue;
    }
    md += "| key (`llm." + a.name + ".`) | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
    md_rows(a.params, "", md);
    md += "\n";
  }
  return md;
}

json eval_task_json(const EvalTaskInfo& t) {
  json keys = json::array();
  for (const auto& p : t.keys) keys.push_back(param_json(p));
  return {{"type", t.type},       {"description", t.description}, {"keys", keys},          {"data", t.data},
          {"metrics", t.metrics}, {"protocol", t.protocol},       {"windowed", t.windowed}};
}

std::string eval_tasks_markdown() {
  std::string md;
  for (const auto& t : eval_task_catalog()) {
    md += "### `type: " + t.type + "`\n\n" + t.description + ". Reads: " + t.data + ". Reports: ";
    for (std::size_t i = 0; i < t.metrics.size(); ++i) md += (i == 0 ? "`" : ", `") + t.metrics[i] + "`";
    md += ". Protocol: " + t.protocol + ".\n\n";
    md += "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
    md += "| `name` | string |  |  | label in the report (default: the type) |\n";
    md_rows(t.keys, "", md);
    md += "\n";
  }
  return md;
}

std::string spec_template(const AlgorithmInfo& a, const std::string& model) {
  std::string out = "# A qjobs job: " + a.description + ".\n";
  out += "# Check it with `jobctl validate FILE`, run it with `jobctl submit FILE --wait`.\n";
  out += "MODEL: " + json(model).dump() + "  # a local model folder or a Hugging Face hub id\n";
  out += "ALGORITHM: " + a.name + "\n";
  out += "JOB_ID: " + json(a.name + "-job").dump() + "  # the job's name: jobctl accepts it wherever it takes an id\n";
  if (a.calib_samples > 0) {
    out += "calibration:\n";
    out += "  data_path: \"examples/data/kjv/calib.jsonl\"  # .txt, .jsonl ({\"text\": ...} rows) or .json\n";
    out += "  n_samples: " + std::to_string(a.calib_samples) + "\n";
    out += "  seqlen: " + std::to_string(a.calib_seqlen) + "\n";
  }
  if (a.name != "Evaluate") {
    out +=
        "# EXPORT_FORMAT: compressed-tensors  # the default for quantizing algorithms; fake_quant keeps float "
        "weights\n";
  }
  out +=
      "eval:\n  tasks:\n    - type: ppl\n      name: heldout\n      data_path: \"examples/data/kjv/test.jsonl\"\n"
      "      seqlen: 512\n";
  if (!a.params.empty()) {
    out += "llm:\n  " + a.name + ":\n";
    yaml_params(a.params, "    ", "", out);
  }
  return out;
}

}  // namespace qjobs
