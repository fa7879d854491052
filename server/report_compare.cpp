#include "server/report_compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "spec/algorithm_catalog.hpp"
#include "common/job_dir.hpp"

namespace qjobs::server {
using nlohmann::json;

namespace {

// The results a report holds for its own model: the quantized one, or the
// evaluated checkpoint of an Evaluate job.
const json& own_results(const json& r) {
  static const json empty = json::object();
  if (!r.is_object() || !r.contains("eval") || !r["eval"].is_object()) return empty;
  if (r["eval"].contains("quantized")) return r["eval"]["quantized"];
  if (r["eval"].contains("model")) return r["eval"]["model"];
  return empty;
}

const json& original_results(const json& r) {
  static const json empty = json::object();
  if (!r.is_object() || !r.contains("eval") || !r["eval"].is_object() || !r["eval"].contains("original")) return empty;
  return r["eval"]["original"];
}

// A string field of an object, or `fallback` when absent or of another type.
std::string string_at(const json& o, const char* key, const std::string& fallback) {
  if (!o.is_object()) return fallback;
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : fallback;
}

// Which keys report_summary keeps, by their path from the report's root.
bool summary_keeps(const std::vector<std::string>& path) {
  static const std::set<std::string> top = {"algorithm",     "export_format", "model",  "spec",  "size_mib",
                                            "stage_seconds", "eval",          "layers", "recipe"};
  static const std::set<std::string> result_keys = {"ppl",     "acc",    "acc_norm",    "protocol", "data", "seqlen",
                                                    "windows", "format", "num_fewshot", "n",        "seed", "cached"};
  const auto& p = path;
  switch (p.size()) {
    case 1:
      return top.count(p[0]) > 0;
    case 2:
      return (p[0] == "model" && p[1] == "source") || (p[0] == "spec" && p[1] == "params") ||
             (p[0] == "size_mib" && (p[1] == "before" || p[1] == "after")) ||
             (p[0] == "stage_seconds" && p[1] == "quantize") ||
             (p[0] == "eval" && (p[1] == "quantized" || p[1] == "model" || p[1] == "original")) ||
             (p[0] == "recipe" && (p[1] == "activations" || p[1] == "kv_cache"));
    case 3:
      // layers[i].weights: the array adds a level without a key (p[1] is "").
      return ((p[0] == "spec" || p[0] == "eval" || (p[0] == "recipe" && p[1] == "activations")) &&
              p[2].size() <= 200) ||
             (p[0] == "layers" &&
              (p[2] == "weights" || p[2] == "name" || p[2] == "rel_out_err" || p[2] == "rel_fro_err")) ||
             (p[0] == "recipe" && p[1] == "kv_cache" && (p[2] == "kind" || p[2] == "bits"));
    case 4:
      return (p[0] == "eval" && result_keys.count(p[3]) > 0) ||
             (p[0] == "recipe" && p[1] == "activations" && (p[3] == "kind" || p[3] == "bits"));
    default:
      return false;
  }
}

// The decoder block a Linear belongs to: its name's first all-digit segment
// ("model.layers.12.mlp.experts.3.up_proj" is block 12, "transformer.h.0.
// attn.c_attn" block 0); none for a name without one (lm_head).
std::optional<std::size_t> block_of(const std::string& name) {
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t end = std::min(name.find('.', start), name.size());
    const std::string_view seg(name.data() + start, end - start);
    if (!seg.empty() && seg.size() <= 6 &&
        std::all_of(seg.begin(), seg.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::stoul(std::string(seg));
    start = end + 1;
  }
  return std::nullopt;
}

// Each block's mean error over its Linears, from layers[]: the relative
// output error where every Linear has one (calibrated algorithms), else the
// relative weight error. Blocks past kMaxCompareBlocks are left out.
json block_errors(const json& layers) {
  constexpr std::size_t kMaxCompareBlocks = 4096;
  struct Sum {
    double out = 0, fro = 0;
    int n_out = 0, n_fro = 0;
  };
  std::vector<Sum> sums;
  for (const auto& l : layers) {
    if (!l.is_object()) continue;
    const auto block = block_of(string_at(l, "name", ""));
    if (!block || *block >= kMaxCompareBlocks) continue;
    if (sums.size() <= *block) sums.resize(*block + 1);
    const auto add = [&](const char* key, double& sum, int& n) {
      const auto it = l.find(key);
      if (it != l.end() && it->is_number() && std::isfinite(it->get<double>())) sum += it->get<double>(), ++n;
    };
    add("rel_out_err", sums[*block].out, sums[*block].n_out);
    add("rel_fro_err", sums[*block].fro, sums[*block].n_fro);
  }
  int n_out = 0, n_fro = 0;
  for (const auto& b : sums) n_out += b.n_out, n_fro += b.n_fro;
  if (n_fro == 0 && n_out == 0) return nullptr;
  const bool out = n_out > 0 && n_out >= n_fro;
  json values = json::array();
  for (const auto& b : sums) {
    const int n = out ? b.n_out : b.n_fro;
    values.push_back(n ? json((out ? b.out : b.fro) / n) : json(nullptr));
  }
  return {{"metric", out ? "rel_out_err" : "rel_fro_err"}, {"values", values}};
}

}  // namespace

std::optional<json> report_summary(std::string_view text, std::string* problem) {
  if (problem) problem->clear();
  const auto fail = [&](std::string m) -> std::optional<json> {
    if (problem) *problem = "report.json: " + std::move(m);
    return std::nullopt;
  };
  if (text.size() > kMaxReportBytes) return fail("larger than " + std::to_string(kMaxReportBytes) + " bytes");
  if (json_text_depth(text, kMaxReportDepth) > kMaxReportDepth)
    return fail("nested deeper than " + std::to_string(kMaxReportDepth) + " levels");
  std::vector<std::string> path;
  const json::parser_callback_t keep = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event != json::parse_event_t::key) return true;
    path.resize(static_cast<std::size_t>(std::max(depth - 1, 0)));
    path.push_back(parsed.is_string() ? parsed.get<std::string>() : std::string());
    return summary_keeps(path);
  };
  json r = json::parse(text, keep, /*allow_exceptions=*/false);
  if (r.is_discarded()) return fail("not valid JSON");
  if (!r.is_object()) return fail("not a JSON object");
  // Types: what compare shows is a string or a number; anything else goes.
  json out = json::object();
  for (const char* k : {"algorithm", "export_format"})
    if (r.contains(k) && r[k].is_string()) out[k] = r[k];
  if (const std::string src = string_at(r.value("model", json()), "source", ""); !src.empty())
    out["model"] = {{"source", src}};
  if (r.contains("spec") && r["spec"].is_object() && r["spec"].contains("params") && r["spec"]["params"].is_object()) {
    json params = json::object();
    for (const auto& [k, v] : r["spec"]["params"].items())
      if (v.is_primitive()) params[k] = v;
    out["spec"] = {{"params", params}};
  }
  for (const char* section : {"size_mib", "stage_seconds"})
    if (r.contains(section) && r[section].is_object()) {
      json kept = json::object();
      for (const auto& [k, v] : r[section].items())
        if (v.is_number()) kept[k] = v;
      out[section] = kept;
    }
  // What each Linear became, counted by form ("int4 g32": 24), and the
  // activation and KV-cache schemes the algorithm recorded, counted alike.
  const auto count_into = [](json& counts, const std::string& key) {
    if (key.empty() || key.size() > 64 || (counts.size() >= 64 && !counts.contains(key))) return;
    counts[key] = counts.value(key, 0) + 1;
  };
  if (r.contains("layers") && r["layers"].is_array()) {
    json forms = json::object();
    for (const auto& l : r["layers"]) count_into(forms, string_at(l, "weights", ""));
    if (!forms.empty()) out["weight_forms"] = forms;
    if (json errs = block_errors(r["layers"]); !errs.is_null()) out["block_errors"] = std::move(errs);
  }
  if (r.contains("recipe") && r["recipe"].is_object()) {
    const json& recipe = r["recipe"];
    json acts = json::object();
    if (recipe.contains("activations") && recipe["activations"].is_object())
      for (const auto& [name, a] : recipe["activations"].items()) {
        const std::string kind = string_at(a, "kind", "");
        const json bits = a.is_object() ? a.value("bits", json()) : json();
        count_into(acts, kind + (bits.is_number_integer() ? ":" + std::to_string(bits.get<int>()) : ""));
      }
    if (!acts.empty()) out["act_forms"] = acts;
    if (recipe.contains("kv_cache") && recipe["kv_cache"].is_object()) {
      const json& kv = recipe["kv_cache"];
      json kept = {{"kind", string_at(kv, "kind", "none")}};
      if (kv.contains("bits") && kv["bits"].is_number_integer()) kept["bits"] = kv["bits"];
      out["kv_cache"] = kept;
    }
  }
  if (r.contains("eval") && r["eval"].is_object()) {
    json eval = json::object();
    for (const auto& [which, tasks] : r["eval"].items()) {
      if (!tasks.is_object()) continue;
      json kept_tasks = json::object();
      for (const auto& [task, res] : tasks.items()) {
        if (!res.is_object() || kept_tasks.size() >= 256) continue;
        json kept = json::object();
        for (const auto& [k, v] : res.items()) {
          if (k == "cached") kept[k] = true;
          else if (v.is_number() || (v.is_string() && v.get_ref<const std::string&>().size() <= 1024)) kept[k] = v;
        }
        kept_tasks[task] = kept;
      }
      eval[which] = kept_tasks;
    }
    out["eval"] = eval;
  }
  return out;
}

namespace {

std::string model_of(const json& r) {
  if (r.is_object() && r.contains("model") && r["model"].is_object() && r["model"].contains("source") &&
      r["model"]["source"].is_string())
    return r["model"]["source"].get<std::string>();
  return "?";
}

std::string str_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

// Everything that makes two results of one task comparable.
std::string protocol_key(const json& result) {
  std::string k;
  for (const char* f : {"protocol", "data", "seqlen", "windows", "format", "num_fewshot", "n", "seed"})
    if (result.contains(f)) k += std::string(f) + "=" + str_of(result[f]) + ";";
  return k;
}

std::string protocol_text(const json& result) {
  std::string t;
  const auto add = [&](const std::string& s) { t += (t.empty() ? "" : ", ") + s; };
  if (result.contains("ppl")) {
    add("seqlen " + str_of(result.value("seqlen", json(0))));
    add(str_of(result.value("windows", json(0))) + " windows");
  } else {
    add(string_at(result, "format", "mc"));
    add(str_of(result.value("num_fewshot", json(0))) + "-shot");
    add("n=" + str_of(result.value("n", json(0))));
  }
  if (result.contains("data") && result["data"].is_string()) add("data " + result["data"].get<std::string>());
  return t;
}

json number_or_null(const json& results, const std::string& task, const char* key) {
  if (results.is_object() && results.contains(task) && results[task].is_object() && results[task].contains(key) &&
      results[task][key].is_number())
    return results[task][key];
  return nullptr;
}

json param(const json& report, const std::string& algo, const std::string& key) {
  const json& spec = report.value("spec", json::object());
  const json& params = spec.is_object() ? spec.value("params", json::object()) : json::object();
  if (params.is_object() && params.contains(key)) return params[key];
  if (const auto* info = find_algorithm(algo))
    for (const auto& p : info->params)
      if (p.name == key) return p.default_value;
  return nullptr;
}

}  // namespace

namespace {

// "int4 g32" -> "W4 g32", "int8 per channel" -> "W8 per-channel", "FP8" ->
// "W-FP8"; "float" stays (a Linear kept in float, or a form without an
// integer code).
std::string weight_words(const std::string& form) {
  if (form.rfind("int", 0) == 0) {
    std::string w = "W" + form.substr(3);
    if (const auto at = w.find(" per channel"); at != std::string::npos) w.replace(at, 12, " per-channel");
    return w;
  }
  if (form == "float") return form;
  return "W-" + form;
}

// "int_token:8" -> "A8 dynamic", "fp8_tensor" -> "A-FP8 static".
std::string act_words(const std::string& form) {
  const auto colon = form.find(':');
  const std::string kind = form.substr(0, colon);
  const std::string bits = colon == std::string::npos ? "8" : form.substr(colon + 1);
  if (kind == "int_token") return "A" + bits + " dynamic";
  if (kind == "int_tensor") return "A" + bits + " static";
  if (kind == "fp8_token") return "A-FP8 dynamic";
  if (kind == "fp8_tensor") return "A-FP8 static";
  if (kind == "nvfp4") return "A-NVFP4";
  if (kind == "mxfp4") return "A-MXFP4";
  return "";
}

// Forms by count, most first (then by name): "W4 g32 + W8 g32".
std::string joined_forms(const json& counts, std::string (*words)(const std::string&)) {
  std::vector<std::pair<int64_t, std::string>> by_count;
  for (const auto& [form, n] : counts.items())
    if (n.is_number_integer()) by_count.emplace_back(-n.get<int64_t>(), words(form));
  std::sort(by_count.begin(), by_count.end());
  std::string out;
  std::set<std::string> seen;
  for (const auto& [n, w] : by_count)
    if (!w.empty() && seen.insert(w).second) out += (out.empty() ? "" : " + ") + w;
  return out;
}

// "W4 g32 ×20, W8 g32 ×8": every form with its count of Linears.
std::string counted_forms(const json& counts, std::string (*words)(const std::string&)) {
  std::vector<std::pair<int64_t, std::string>> by_count;
  for (const auto& [form, n] : counts.items())
    if (n.is_number_integer()) by_count.emplace_back(-n.get<int64_t>(), form);
  std::sort(by_count.begin(), by_count.end());
  std::string out;
  for (const auto& [n, form] : by_count) {
    const std::string w = words(form);
    out += (out.empty() ? "" : ", ") + (w.empty() ? form : w) + " ×" + std::to_string(-n);
  }
  return out;
}

// The settings of a column, in order: the recorded scheme, then the spec's
// keys, as [name, value] pairs (an array: JSON objects lose the order).
json column_settings(const json& report) {
  json out = json::array();
  if (!report.is_object()) return out;
  const auto add = [&](const std::string& k, const std::string& v) { out.push_back(json::array({k, v})); };
  add("algorithm", string_at(report, "algorithm", "?"));
  const json forms = report.value("weight_forms", json::object());
  if (forms.is_object() && !forms.empty()) add("weights", counted_forms(forms, weight_words));
  const json acts = report.value("act_forms", json::object());
  add("activations", acts.is_object() && !acts.empty() ? counted_forms(acts, act_words) : "float");
  const json kv = report.value("kv_cache", json::object());
  const std::string kind = string_at(kv, "kind", "none");
  add("KV cache", kind == "fp8"                                                            ? "FP8"
                  : kind == "int" && kv.contains("bits") && kv["bits"].is_number_integer() ? "int" + kv["bits"].dump()
                                                                                           : "float");
  add("format", string_at(report, "export_format", "?"));
  const json& spec = report.value("spec", json::object());
  if (spec.is_object() && spec.contains("params") && spec["params"].is_object())
    for (const auto& [k, v] : spec["params"].items())
      if (out.size() < 64) add(k, str_of(v));
  return out;
}

}  // namespace

std::string compare_label(const json& report) {
  if (!report.is_object()) return "?";
  const std::string algo = string_at(report, "algorithm", "?");
  std::string label = algo;
  const auto add = [&](const std::string& s) {
    if (!s.empty()) label += " " + s;
  };
  if (algo == "Evaluate") {
    add(string_at(report, "export_format", ""));
    return label;
  }
  // The recorded scheme of every Linear when the report has it (what was
  // done, overrides and mixes included); the spec's keys otherwise.
  const json forms = report.value("weight_forms", json::object());
  bool integer = false;
  std::string weights;
  if (forms.is_object()) {
    for (const auto& [form, n] : forms.items()) integer = integer || form.rfind("int", 0) == 0;
    if (forms.size() > 1 || (forms.size() == 1 && !forms.contains("float")))
      weights = joined_forms(forms, weight_words);
  }
  if (!weights.empty()) {
    add(weights);
  } else if (algo == "LMQuant") {
    add(str_of(param(report, algo, "quant_type")));
  } else {
    const json w = param(report, algo, "W_BIT");
    if (w.is_number_integer()) add("W" + std::to_string(w.get<int>()));
    const json g = param(report, algo, "Q_GROUP_SIZE");
    if (g.is_number_integer()) add(g.get<int>() < 0 ? "per-channel" : "g" + std::to_string(g.get<int>()));
    const json f = param(report, algo, "W_FORMAT");
    if (f.is_string() && f != "int") add(f.get<std::string>());
    integer = integer || w.is_number_integer();
  }
  if (integer) {
    const json zp = param(report, algo, "ZERO_POINT");
    if (zp.is_boolean()) add(zp.get<bool>() ? "asym" : "sym");
  }
  if (param(report, algo, "DESC_ACT") == json(true)) add("act-order");
  const json acts = report.value("act_forms", json::object());
  if (acts.is_object() && !acts.empty()) {
    add(joined_forms(acts, act_words));
  } else {
    const json a = param(report, algo, "A_BIT");
    if (a.is_number_integer() && a.get<int>() > 0) add("A" + std::to_string(a.get<int>()));
    const json act = param(report, algo, "ACT");
    if (act.is_string() && (algo == "FP8" || algo == "NVFP4" || algo == "MXFP4"))
      add(act == "none" ? "weight-only" : "act " + act.get<std::string>());
  }
  const json kv = report.value("kv_cache", json::object());
  const std::string kv_kind = string_at(kv, "kind", "none");
  if (kv_kind == "fp8") add("KV-FP8");
  else if (kv_kind == "int" && kv.contains("bits") && kv["bits"].is_number_integer())
    add("KV" + std::to_string(kv["bits"].get<int>()));
  add(string_at(report, "export_format", ""));
  return label;
}

json compare_reports(const std::vector<CompareInput>& jobs) {
  json columns = json::array();
  json notes = json::array();
  json original_size = json::object();
  for (const auto& j : jobs) {
    const json& r = j.report;
    json col = {{"id", j.id},
                {"name", j.name},
                {"state", j.state},
                {"label", j.report.is_object() ? compare_label(r) : "?"},
                {"algorithm", r.is_object() && r.contains("algorithm") && r["algorithm"].is_string() ? r["algorithm"]
                                                                                                     : json(nullptr)},
                {"model", r.is_object() ? json(model_of(r)) : json(nullptr)},
                {"export_format", r.is_object() && r.contains("export_format") && r["export_format"].is_string()
                                      ? r["export_format"]
                                      : json(nullptr)},
                {"size_mib", nullptr},
                {"quantize_s", nullptr},
                {"settings", column_settings(r)},
                {"block_errors", r.is_object() && r.contains("block_errors") && r["block_errors"].is_object()
                                     ? r["block_errors"]
                                     : json(nullptr)}};
    if (!j.problem.empty()) {
      notes.push_back("job " + j.id + ": " + j.problem);
    } else if (!r.is_object()) {
      notes.push_back("job " + j.id + " (" + j.state + ") has no report yet");
    } else {
      const json& size = r.value("size_mib", json::object());
      const bool evaluate = string_at(r, "algorithm", "") == "Evaluate";
      if (size.is_object()) {
        if (size.contains("after") && size["after"].is_number()) col["size_mib"] = size["after"];
        else if (evaluate && size.contains("before") && size["before"].is_number()) col["size_mib"] = size["before"];
        if (!evaluate && size.contains("before") && size["before"].is_number() && !original_size.contains(model_of(r)))
          original_size[model_of(r)] = size["before"];
      }
      const json& secs = r.value("stage_seconds", json::object());
      if (secs.is_object() && secs.contains("quantize") && secs["quantize"].is_number())
        col["quantize_s"] = secs["quantize"];
    }
    columns.push_back(col);
  }
  // Two columns with one label: tell them apart by name, else by id.
  std::map<std::string, int> uses;
  for (const auto& c : columns) ++uses[c["label"].get<std::string>()];
  for (auto& c : columns)
    if (uses[c["label"].get<std::string>()] > 1) {
      const std::string who =
          c["name"].get<std::string>().empty() ? c["id"].get<std::string>() : c["name"].get<std::string>();
      c["label"] = c["label"].get<std::string>() + " [" + who + "]";
    }

  // One entry per (model, task, protocol, metric), in first-seen order.
  json tables = json::array();
  std::map<std::string, std::size_t> index;
  std::map<std::string, std::set<std::string>> protocols_of_task;  // model + task -> protocol keys
  const auto entry = [&](const std::string& model, const std::string& task, const json& result,
                         const char* metric) -> json& {
    const std::string key = model + "\n" + task + "\n" + protocol_key(result) + "\n" + metric;
    protocols_of_task[model + "\n" + task].insert(protocol_key(result));
    if (const auto it = index.find(key); it != index.end()) return tables[it->second];
    index[key] = tables.size();
    tables.push_back({{"model", model},
                      {"task", task},
                      {"metric", metric},
                      {"protocol", protocol_text(result)},
                      {"original", nullptr},
                      {"original_cached", false},
                      {"values", json::array()},
                      {"cached", json::array()}});
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      tables.back()["values"].push_back(nullptr);
      tables.back()["cached"].push_back(false);
    }
    return tables.back();
  };
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const json& r = jobs[i].report;
    if (!r.is_object()) continue;
    const std::string model = model_of(r);
    const json& own = own_results(r);
    const json& orig = original_results(r);
    for (const json* results : {&orig, &own}) {
      if (!results->is_object()) continue;
      for (auto& [task, res] : results->items()) {
        if (!res.is_object()) continue;
        for (const char* metric : {"ppl", "acc", "acc_norm"}) {
          const json v = number_or_null(*results, task, metric);
          if (v.is_null()) continue;
          json& e = entry(model, task, res, metric);
          if (results == &orig) {
            if (e["original"].is_null()) {
              e["original"] = v;
              e["original_cached"] = res.contains("cached");
            }
          } else {
            e["values"][i] = v;
            e["cached"][i] = res.contains("cached");
          }
        }
      }
    }
  }
  for (const auto& [key, protos] : protocols_of_task)
    if (protos.size() > 1) {
      const auto nl = key.find('\n');
      notes.push_back("task " + key.substr(nl + 1) + " on " + key.substr(0, nl) + " was measured with " +
                      std::to_string(protos.size()) + " different protocols; each has its own row");
    }
  std::set<std::string> models;
  for (const auto& c : columns)
    if (c["model"].is_string()) models.insert(c["model"].get<std::string>());
  if (models.size() > 1)
    notes.push_back(std::to_string(models.size()) + " different models: a row holds the numbers of one model only");
  bool any_cached = false;
  for (const auto& t : tables) {
    any_cached = any_cached || t["original_cached"].get<bool>();
    for (const auto& c : t["cached"]) any_cached = any_cached || c.get<bool>();
  }
  if (any_cached)
    notes.push_back(
        "numbers marked * were reused from the baseline cache (an earlier job on the same model files, task and data)");
  return {{"columns", columns}, {"original_size_mib", original_size}, {"tables", tables}, {"notes", notes}};
}

std::string compare_markdown(const json& c) {
  const auto num = [](const json& v, bool cached) {
    if (!v.is_number()) return std::string("-");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f", v.get<double>());
    return std::string(buf) + (cached ? "*" : "");
  };
  std::string md = "| | original |";
  std::string rule = "|---|---|";
  for (const auto& col : c["columns"]) {
    md += " " + col["label"].get<std::string>() + " |";
    rule += "---|";
  }
  md += "\n" + rule + "\n";
  // Size: the original column only when every job is on one model.
  const json& sizes = c["original_size_mib"];
  md += "| size on disk (MiB) | " + (sizes.size() == 1 ? num(sizes.begin().value(), false) : std::string("-")) + " |";
  for (const auto& col : c["columns"]) md += " " + num(col["size_mib"], false) + " |";
  md += "\n";
  for (const auto& t : c["tables"]) {
    md += "| " + t["task"].get<std::string>() + " " + t["metric"].get<std::string>() + " (" +
          t["protocol"].get<std::string>() + "; " + t["model"].get<std::string>() + ") | " +
          num(t["original"], t["original_cached"].get<bool>()) + " |";
    for (std::size_t i = 0; i < t["values"].size(); ++i)
      md += " " + num(t["values"][i], t["cached"][i].get<bool>()) + " |";
    md += "\n";
  }
  md += "| quantize seconds | - |";
  for (const auto& col : c["columns"]) md += " " + num(col["quantize_s"], false) + " |";
  md += "\n";
  if (!c["columns"].empty()) {
    md += "\nJobs:";
    for (const auto& col : c["columns"])
      md += " " + col["label"].get<std::string>() + " = " + col["id"].get<std::string>() +
            (col["name"].get<std::string>().empty() ? "" : " (" + col["name"].get<std::string>() + ")") + ";";
    md += "\n";
  }
  for (const auto& n : c["notes"]) md += "\nNote: " + n.get<std::string>() + "\n";
  return md;
}

}  // namespace qjobs::server
