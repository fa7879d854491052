#include "spec/job_spec.hpp"
#include "common/error.hpp"
#include "common/job_id.hpp"

#include "jobs/model/model_config_check.hpp"
#include "spec/export_formats.hpp"
#include "common/model_locator.hpp"

#include "spec/nyuntam_eval.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <cmath>
#include <cstdio>

#include <yaml-cpp/yaml.h>

#include "spec/algorithm_catalog.hpp"
#include "spec/eval_task.hpp"
#include "common/strings.hpp"

namespace qjobs {
namespace {

using nlohmann::json;

const std::vector<std::string> kServerOwnedPaths = {"USER_FOLDER", "JOB_PATH", "MODEL_PATH", "LOGGING_PATH",
                                                    "CACHE_PATH"};

struct TopKey {
  std::string name;
  ParamType type;
};

// Every top-level key the spec accepts, besides `llm`.
const std::vector<TopKey>& top_keys() {
  static const std::vector<TopKey> keys = {
      {"MODEL", ParamType::string},         {"CUSTOM_MODEL_PATH", ParamType::string},
      {"DATASET_NAME", ParamType::string},  {"DATASET_SUBNAME", ParamType::string},
      {"DATA_PATH", ParamType::string},     {"TEXT_COLUMN", ParamType::string},
      {"SPLIT", ParamType::string},         {"FORMAT_STRING", ParamType::string},
      {"CUDA_ID", ParamType::string},       {"ALGORITHM", ParamType::string},
      {"JOB_SERVICE", ParamType::string},   {"TASK", ParamType::string},
      {"ALGO_TYPE", ParamType::string},     {"JOB_ID", ParamType::string},
      {"USER_FOLDER", ParamType::string},   {"JOB_PATH", ParamType::string},
      {"MODEL_PATH", ParamType::string},    {"LOGGING_PATH", ParamType::string},
      {"CACHE_PATH", ParamType::string},    {"PRIORITY", ParamType::integer},
      {"TIMEOUT_S", ParamType::number},     {"MAX_ATTEMPTS", ParamType::integer},
      {"DTYPE", ParamType::string},         {"EXPORT_FORMAT", ParamType::string},
      {"ONNX_SEQ_LEN", ParamType::integer}, {"ONNX_CONTEXT_LEN", ParamType::integer},
      {"VERIFY", ParamType::boolean},
  };
  return keys;
}

class Validator {
 public:
  std::vector<SpecIssue> issues;
  std::size_t dropped = 0;  // issues beyond kMaxSpecIssues, counted only

  // Records a problem. Paths and messages echo untrusted keys and values, so
  // both are cut (excerpt) and at most kMaxSpecIssues are kept: a hostile
  // spec costs a bounded reply.
  void add(const std::string& path, const YAML::Mark& mark, const std::string& message) {
    if (issues.size() >= kMaxSpecIssues) {
      ++dropped;
      return;
    }
    const bool placed = mark.line >= 0 && mark.column >= 0;
    issues.push_back(
        {excerpt(path, 256), placed ? mark.line + 1 : 0, placed ? mark.column + 1 : 0, excerpt(message, 1024)});
  }

  // Closes the list: one last entry says how many were left out.
  std::vector<SpecIssue> finish() {
    if (dropped > 0)
      issues.push_back({"", 0, 0,
                        std::to_string(dropped) + " more problems not listed (at most " +
                            std::to_string(kMaxSpecIssues) + " are reported)"});
    return std::move(issues);
  }

  static std::string join_path(const std::string& base, const std::string& key) {
    return base.empty() ? key : base + "." + key;
  }

  static std::string show(const YAML::Node& n) {
    if (n.IsScalar()) return "'" + excerpt(n.Scalar()) + "'";
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "null";
  }

  // Converts a scalar node to `type`, or records why it cannot. A quoted
  // number is accepted where a number is expected (Nyuntam writes " -2").
  std::optional<json> scalar(const YAML::Node& n, ParamType type, const std::string& path) {
    const auto wrong = [&] {
      add(path, n.Mark(), "expected " + std::string(param_type_name(type)) + ", got " + show(n));
      return std::nullopt;
    };
    if (type == ParamType::string_list) {
      if (n.IsScalar()) {
        json list = json::array();
        for (auto& part : split(n.Scalar(), ',')) {
          auto t = trim(part);
          if (!t.empty()) list.push_back(t);
        }
        return list;
      }
      if (!n.IsSequence()) return wrong();
      json list = json::array();
      for (const auto& item : n) {
        if (!item.IsScalar()) {
          add(path, item.Mark(), "expected a string list item, got " + show(item));
          return std::nullopt;
        }
        list.push_back(item.Scalar());
      }
      return list;
    }
    if (!n.IsScalar()) return wrong();
    const std::string& s = n.Scalar();
    switch (type) {
      case ParamType::string:
        return json(s);
      case ParamType::boolean: {
        const auto l = to_lower(trim(s));
        if (l == "true" || l == "yes" || l == "on") return json(true);
        if (l == "false" || l == "no" || l == "off") return json(false);
        return wrong();
      }
      case ParamType::integer: {
        if (auto v = parse_int(s)) return json(*v);
        return wrong();
      }
      case ParamType::number: {
        if (auto v = parse_double(s); v && std::isfinite(*v)) return json(*v);
        return wrong();
      }
      default:
        return wrong();
    }
  }

  std::optional<json> value(const YAML::Node& n, const ParamSpec& spec, const std::string& path) {
    if (spec.type == ParamType::section_list) {
      if (!n.IsSequence()) {
        add(path, n.Mark(), "expected a list of mappings, got " + show(n));
        return std::nullopt;
      }
      json list = json::array();
      int i = 0;
      for (const auto& item : n) {
        const std::string ipath = path + "[" + std::to_string(i++) + "]";
        if (!item.IsMap()) {
          add(ipath, item.Mark(), "expected a mapping, got " + show(item));
          continue;
        }
        json out = json::object();
        section(item, spec.children, ipath, out);
        list.push_back(out);
      }
      return list;
    }
    if (spec.type == ParamType::section) {
      if (!n.IsMap()) {
        add(path, n.Mark(), "expected a mapping, got " + show(n));
        return std::nullopt;
      }
      json out = json::object();
      section(n, spec.children, path, out);
      return out;
    }
    auto v = scalar(n, spec.type, path);
    if (!v) return std::nullopt;
    if (spec.type == ParamType::integer || spec.type == ParamType::number) {
      const double d = v->get<double>();
      if (d < spec.min || d > spec.max) {
        add(path, n.Mark(),
            "value " + excerpt(n.Scalar()) + " is out of range [" + fmt_num(spec.min) + ", " + fmt_num(spec.max) + "]");
        return std::nullopt;
      }
    }
    if (spec.type == ParamType::string && !spec.choices.empty()) {
      const auto s = v->get<std::string>();
      if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
        std::string msg = "'" + excerpt(s) + "' is not one of " + join(spec.choices);
        if (auto near = closest_name(s, spec.choices)) msg += "; did you mean '" + *near + "'?";
        add(path, n.Mark(), msg);
        return std::nullopt;
      }
    }
    if (spec.check) {
      if (auto msg = spec.check(*v)) {
        add(path, n.Mark(), *msg);
        return std::nullopt;
      }
    }
    return v;
  }

  // Validates a mapping against `children`, expanding dotted keys, and merges
  // the result into `out` (later keys override earlier ones).
  void section(const YAML::Node& map, const std::vector<ParamSpec>& children, const std::string& base, json& out) {
    for (const auto& kv : map) {
      const YAML::Node& key = kv.first;
      if (!key.IsScalar()) {
        add(base, key.Mark(), "keys must be plain names");
        continue;
      }
      const auto parts = split(key.Scalar(), '.');
      const std::vector<ParamSpec>* level = &children;
      json* target = &out;
      std::string path = base;
      bool ok = true;
      for (std::size_t i = 0; i < parts.size() && ok; ++i) {
        const auto& part = parts[i];
        path = join_path(path, part);
        const auto it = std::find_if(level->begin(), level->end(), [&](const ParamSpec& p) { return p.name == part; });
        if (it == level->end()) {
          unknown_key(path, key.Mark(), part, *level);
          ok = false;
          break;
        }
        if (i + 1 < parts.size()) {
          if (it->type != ParamType::section) {
            add(path, key.Mark(),
                "'" + excerpt(part) + "' is " + std::string(param_type_name(it->type)) + ", it has no keys below it");
            ok = false;
            break;
          }
          if (!target->contains(part)) (*target)[part] = json::object();
          target = &(*target)[part];
          level = &it->children;
          continue;
        }
        if (kv.second.IsNull()) break;  // an empty value keeps the default
        if (auto v = value(kv.second, *it, path)) {
          if (it->type == ParamType::section && target->contains(part)) (*target)[part].merge_patch(*v);
          else (*target)[part] = *v;
        }
      }
    }
  }

  void unknown_key(const std::string& path, const YAML::Mark& mark, const std::string& key,
                   const std::vector<ParamSpec>& known) {
    std::vector<std::string> names;
    for (const auto& p : known) names.push_back(p.name);
    std::string msg = "unknown key '" + excerpt(key) + "'";
    if (auto near = closest_name(key, names)) msg += "; did you mean '" + *near + "'?";
    msg += names.empty() ? " (this section takes no keys)" : " (known: " + join(names) + ")";
    add(path, mark, msg);
  }

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }

  static std::string fmt_num(double d) {
    if (d <= -1e299) return "-inf";
    if (d >= 1e299) return "inf";
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<long long>(d));
    return std::to_string(d);
  }
};

// Nodes and scalar bytes of `root` with every alias expanded, counted
// iteratively; counting stops just past the limits, so the cost is bounded
// by them whatever the aliases multiply to.
struct ExpandedSize {
  std::size_t nodes = 0;
  std::size_t bytes = 0;
  std::optional<YAML::Mark> bad_utf8;  // first scalar that is not UTF-8 once its escapes are decoded
};
ExpandedSize expanded_size(const YAML::Node& root) {
  ExpandedSize size;
  std::vector<YAML::Node> stack{root};
  while (!stack.empty() && size.nodes <= kMaxSpecNodes && size.bytes <= kMaxSpecBytes) {
    const YAML::Node n = stack.back();
    stack.pop_back();
    ++size.nodes;
    if (n.IsScalar()) {
      size.bytes += n.Scalar().size();
      // yaml-cpp decodes some escapes ("\\_", "\\xA0", a lone "\\uD800")
      // to bytes that are not UTF-8: check what it decoded, not only the text.
      if (!size.bad_utf8 && !valid_utf8(n.Scalar())) size.bad_utf8 = n.Mark();
    } else if (n.IsSequence()) {
      for (const auto& c : n) stack.push_back(c);
    } else if (n.IsMap()) {
      for (const auto& kv : n) {
        stack.push_back(kv.first);
        stack.push_back(kv.second);
      }
    }
  }
  return size;
}

void apply_defaults(const std::vector<ParamSpec>& specs, json& out) {
  for (const auto& p : specs) {
    if (p.type == ParamType::section) {
      if (out.contains(p.name)) apply_defaults(p.children, out[p.name]);
      continue;
    }
    if (!out.contains(p.name) && !p.default_value.is_null()) out[p.name] = p.default_value;
  }
}

std::vector<std::string> algorithm_names(bool available_only) {
  std::vector<std::string> names;
  for (const auto& a : algorithm_catalog())
    if (!available_only || a.available) names.push_back(a.name);
  return names;
}

}  // namespace

json to_json(const SpecIssue& i) {
  return {{"path", i.path}, {"line", i.line}, {"column", i.column}, {"message", i.message}};
}

int JobSpec::devices_requested() const { return std::max<int>(1, static_cast<int>(cuda_ids.size())); }

json to_json(const JobSpec& s) {
  return {{"MODEL", s.model},
          {"CUSTOM_MODEL_PATH", s.custom_model_path},
          {"DATASET_NAME", s.dataset_name},
          {"DATASET_SUBNAME", s.dataset_subname},
          {"DATA_PATH", s.data_path},
          {"TEXT_COLUMN", s.text_columns},
          {"SPLIT", s.split},
          {"FORMAT_STRING", s.format_string},
          {"CUDA_ID", s.cuda_ids},
          {"ALGORITHM", s.algorithm},
          {"JOB_SERVICE", s.job_service},
          {"TASK", s.task},
          {"ALGO_TYPE", s.algo_type},
          {"JOB_ID", s.job_id},
          {"PRIORITY", s.priority},
          {"TIMEOUT_S", s.timeout_s},
          {"MAX_ATTEMPTS", s.max_attempts},
          {"params", s.params},
          {"DTYPE", s.dtype},
          {"EXPORT_FORMAT", s.export_format},
          {"ONNX_SEQ_LEN", s.onnx_seq_len},
          {"ONNX_CONTEXT_LEN", s.onnx_context_len},
          {"VERIFY", s.verify},
          {"eval", s.eval},
          {"calibration", s.calibration},
          {"warnings", s.warnings}};
}

JobSpec job_spec_from_json(const json& j) {
  JobSpec s;
  s.model = j.at("MODEL").get<std::string>();
  s.custom_model_path = j.value("CUSTOM_MODEL_PATH", "");
  s.dataset_name = j.value("DATASET_NAME", "");
  s.dataset_subname = j.value("DATASET_SUBNAME", "");
  s.data_path = j.value("DATA_PATH", "");
  s.text_columns = j.value("TEXT_COLUMN", std::vector<std::string>{});
  s.split = j.value("SPLIT", "");
  s.format_string = j.value("FORMAT_STRING", "");
  s.cuda_ids = j.value("CUDA_ID", std::vector<int>{});
  s.algorithm = j.at("ALGORITHM").get<std::string>();
  s.job_service = j.value("JOB_SERVICE", "");
  s.task = j.value("TASK", "");
  s.algo_type = j.value("ALGO_TYPE", "");
  s.job_id = j.value("JOB_ID", "");
  s.priority = j.value("PRIORITY", 0);
  s.timeout_s = j.value("TIMEOUT_S", 0.0);
  s.max_attempts = j.value("MAX_ATTEMPTS", 2);
  s.params = j.value("params", json::object());
  s.dtype = j.value("DTYPE", std::string("auto"));
  s.export_format = j.value("EXPORT_FORMAT", std::string("fake_quant"));
  s.onnx_seq_len = j.value("ONNX_SEQ_LEN", int64_t{128});
  s.onnx_context_len = j.value("ONNX_CONTEXT_LEN", int64_t{1024});
  s.verify = j.value("VERIFY", true);
  s.eval = j.value("eval", json::object());
  s.calibration = j.value("calibration", json::object());
  s.warnings = j.value("warnings", std::vector<std::string>{});
  return s;
}

namespace {

// Where item `i` of the list under `key` in `map` is; the map's own place
// when the text has no such item (duplicate keys, a key that is not a list).
YAML::Mark item_mark(const YAML::Node& map, const std::string& key, std::size_t i) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar() || kv.first.Scalar() != key) continue;
    if (kv.second.IsSequence() && i < kv.second.size()) return kv.second[i].Mark();
  }
  return map.Mark();
}

// Item `i` of the list under `key` in `map` (the last such key's), found as
// item_mark finds it; a null node when there is none.
YAML::Node list_item(const YAML::Node& map, const std::string& key, std::size_t i) {
  YAML::Node item;
  for (const auto& kv : map)
    if (kv.first.IsScalar() && kv.first.Scalar() == key && kv.second.IsSequence() && i < kv.second.size())
      item.reset(kv.second[i]);
  return item;
}

SpecParseResult parse_unguarded(std::string_view yaml_text, const SpecContext& context);

}  // namespace

// The contract is "never throws": whatever yaml-cpp or the JSON library
// throws on an input nobody foresaw becomes one issue (found by fuzzing:
// a duplicate `tasks:` key once made yaml-cpp throw from a lookup).
SpecParseResult parse_job_spec(std::string_view yaml_text, const SpecContext& context) {
  try {
    return parse_unguarded(yaml_text, context);
  } catch (const std::exception& e) {
    SpecParseResult r;
    r.issues.push_back({"", 0, 0, "the spec could not be validated: " + excerpt(e.what(), 200)});
    return r;
  }
}

namespace {

// The mark of `key` in `map` when it is there, else `fallback`.
YAML::Mark mark_of(const YAML::Node& map, const char* key, const YAML::Mark& fallback) {
  if (map && map.IsMap() && map[key]) return map[key].Mark();
  return fallback;
}

bool looks_like_path(const std::string& model) {
  if (model.empty()) return false;
  if (model[0] == '/' || model[0] == '.' || model[0] == '~' || model.back() == '/') return true;
  if (std::count(model.begin(), model.end(), '/') >= 2) return true;  // a hub id is ORG/NAME
  // ORG/NAME whose ORG is a folder here (examples/does-not-exist) means a
  // folder: a typo in it must not be sent to the hub.
  std::error_code ec;
  const auto slash = model.find('/');
  return slash != std::string::npos && std::filesystem::is_directory(model.substr(0, slash), ec);
}

// The files a checkpoint's weights are read from (jobs/model/checkpoint.cpp's order).
constexpr const char* kWeightFiles[] = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                        "pytorch_model.bin.index.json"};

// Whether the job tokenizes text: an eval task, or calibration data given
// to an algorithm that calibrates.
bool needs_tokenizer(const JobSpec& spec) {
  if (spec.eval.contains("tasks") && spec.eval["tasks"].is_array() && !spec.eval["tasks"].empty()) return true;
  const AlgorithmInfo* algo = find_algorithm(spec.algorithm);
  const bool data = !spec.data_path.empty() || !spec.dataset_name.empty() ||
                    !spec.calibration.value("data_path", std::string()).empty() ||
                    !spec.calibration.value("dataset", std::string()).empty();
  return algo != nullptr && algo->calib_samples > 0 && data;
}

// What the job reads from this machine, checked before it is stored
// (SpecContext::local_files).
void check_local_files(JobSpec& spec, const YAML::Node& root, const YAML::Node& calib_node, const YAML::Node& eval_node,
                       const std::optional<json>& model_config, const Environment& env, Validator& v) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string cwd = fs::current_path(ec).string();
  const char* model_key = spec.custom_model_path.empty() ? "MODEL" : "CUSTOM_MODEL_PATH";
  const fs::path model(spec.model);
  if (!spec.model.empty() && (looks_like_path(spec.model) || fs::exists(model, ec))) {
    if (!fs::is_directory(model, ec))
      v.add(model_key, mark_of(root, model_key, root.Mark()),
            "no model folder " + spec.model + " on the server's machine" +
                (model.is_relative() ? " (a relative path is taken from the server's working directory, " + cwd + ")"
                                     : "") +
                "; a Hugging Face hub id is written ORG/NAME");
    else if (!fs::is_regular_file(model / "config.json", ec))
      v.add(model_key, mark_of(root, model_key, root.Mark()),
            "the model folder " + spec.model +
                " has no config.json (a Hugging Face checkpoint folder: config.json, "
                "*.safetensors, tokenizer files)");
    else if (std::none_of(std::begin(kWeightFiles), std::end(kWeightFiles),
                          [&](const char* f) { return fs::is_regular_file(model / f, ec); }))
      v.add(model_key, mark_of(root, model_key, root.Mark()),
            "the model folder " + spec.model +
                " has no weights: expected model.safetensors, "
                "model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json");
    else if (needs_tokenizer(spec) && !fs::is_regular_file(model / "tokenizer.json", ec))
      v.add(model_key, mark_of(root, model_key, root.Mark()),
            "the model folder " + spec.model + " has no tokenizer.json, which this job needs to read its " +
                (spec.eval.contains("tasks") && !spec.eval["tasks"].empty() ? "eval" : "calibration") + " text");
  }
  const auto need_file = [&](const std::string& path, const std::string& key, const YAML::Mark& mark) {
    if (path.empty() || fs::exists(fs::path(path), ec)) return;
    v.add(key, mark,
          key + " " + path + " does not exist on the server's machine" +
              (fs::path(path).is_relative() ? " (a relative path is taken from " + cwd + ")" : ""));
  };
  need_file(spec.data_path, "DATA_PATH", mark_of(root, "DATA_PATH", root.Mark()));
  need_file(spec.calibration.value("data_path", std::string()), "calibration.data_path",
            mark_of(calib_node, "data_path", root.Mark()));
  // A k-shot task draws k examples for every item: a .jsonl split with
  // fewer rows than it needs fails the task minutes in, so it is counted
  // here (one row per non-blank line, at most `need` lines read).
  const auto need_rows = [&](const fs::path& file, int64_t need, const std::string& key, const YAML::Mark& mark,
                             const std::string& why) {
    if (need <= 0 || file.extension() != ".jsonl") return;
    std::ifstream in(file);
    std::string line;
    int64_t rows = 0;
    while (rows < need && std::getline(in, line))
      if (line.find_first_not_of(" \t\r") != std::string::npos) ++rows;
    if (rows < need)
      v.add(key, mark,
            why + " needs " + std::to_string(need) + " rows; " + file.string() + " has " + std::to_string(rows));
  };
  const auto need_dataset = [&](const std::string& name, const std::string& subset, const std::string& split,
                                const std::string& key, const YAML::Mark& mark, int64_t min_rows = 0,
                                const std::string& why = "") {
    if (name.empty()) return;
    fs::path dir = env.data_dir / name;
    if (!subset.empty()) dir /= subset;
    if (const auto file = find_split_file(dir, split)) {
      need_rows(*file, min_rows, key, mark, why);
      return;
    }
    v.add(key, mark,
          "dataset '" + name + (subset.empty() ? "" : "/" + subset) + "' split '" + split +
              "' is not on the server's machine, and qjobs downloads no data: place it at " +
              (dir / (split + ".jsonl")).string() +
              " (see the README's \"Datasets\" section for each task's "
              "row format), or set DATA_PATH to a local file");
  };
  if (spec.data_path.empty() && spec.calibration.value("data_path", std::string()).empty()) {
    const std::string cal_name = spec.calibration.value("dataset", spec.dataset_name);
    const bool from_calibration = spec.calibration.contains("dataset");
    need_dataset(
        cal_name, spec.calibration.value("subset", spec.dataset_subname),
        spec.calibration.value("split", spec.split.empty() ? std::string("train") : spec.split),
        from_calibration ? "calibration.dataset" : "DATASET_NAME",
        from_calibration ? mark_of(calib_node, "dataset", root.Mark()) : mark_of(root, "DATASET_NAME", root.Mark()));
  }
  if (!spec.eval.contains("tasks") || !spec.eval["tasks"].is_array()) return;
  const int64_t positions = model_config && model_config->contains("max_position_embeddings") &&
                                    (*model_config)["max_position_embeddings"].is_number_integer()
                                ? (*model_config)["max_position_embeddings"].get<int64_t>()
                                : 0;
  const YAML::Node tasks_node = eval_node && eval_node.IsMap() ? eval_node["tasks"] : YAML::Node();
  for (std::size_t i = 0; i < spec.eval["tasks"].size(); ++i) {
    const json& t = spec.eval["tasks"][i];
    if (!t.is_object()) continue;
    const std::string at = "eval.tasks[" + std::to_string(i) + "]";
    YAML::Node item;
    if (tasks_node && tasks_node.IsSequence() && i < tasks_node.size()) item.reset(tasks_node[i]);
    const YAML::Mark item_at = item ? item.Mark() : (eval_node ? eval_node.Mark() : root.Mark());
    if (t.contains("data_path") && t["data_path"].is_string()) {
      const std::string path = t["data_path"].get<std::string>();
      if (!path.empty() && !fs::exists(fs::path(path), ec))
        v.add(at + ".data_path", mark_of(item, "data_path", item_at),
              "eval data " + path + " does not exist on the server's machine" +
                  (fs::path(path).is_relative() ? " (a relative path is taken from " + cwd + ")" : "") +
                  "; see the README's \"Datasets\" section for each task's row format");
    }
    // The named datasets the task reads (Nyuntam's arc_challenge,
    // wikitext-ppl's WikiText-2) under the data root, as the worker reads
    // them: the task's row says which.
    const EvalTaskInfo* row = find_eval_task(t.value("type", std::string()));
    if (row == nullptr) continue;
    const std::string data_path = t.value("data_path", std::string());
    const auto named = row->datasets(t);
    for (const auto& d : named) {
      const std::string shots = std::to_string(d.min_rows) + "-shot (" + at + ".num_fewshot)";
      if (data_path.empty()) {
        // From the items' own split, an item is never its own example.
        const bool own = &d != &named.front() && d.name == named.front().name && d.subset == named.front().subset &&
                         d.split == named.front().split;
        need_dataset(d.name, d.subset, d.split, at + "." + d.key, mark_of(item, "dataset", item_at),
                     d.min_rows + (own && d.min_rows > 0 ? 1 : 0),
                     shots + " with examples from split '" + d.split + "'");
      } else if (d.min_rows > 0 && fs::is_regular_file(data_path, ec)) {
        // One file holds one split: the examples come from it.
        need_rows(data_path, d.min_rows + 1, at + ".num_fewshot", mark_of(item, "num_fewshot", item_at),
                  shots + " with examples from data_path itself (never the item asked)");
      }
    }
    const bool windowed = row->windowed;
    if (windowed && positions > 0 && t.contains("seqlen") && t["seqlen"].is_number_integer() &&
        t["seqlen"].get<int64_t>() > positions && !(item && item.IsMap() && item["seqlen"])) {
      // The default window (not written in the spec) is cut to the model's.
      if (spec.warnings.size() < kMaxSpecIssues)
        spec.warnings.push_back(at + ": the default window " + std::to_string(t["seqlen"].get<int64_t>()) +
                                " is longer than the model's max_position_embeddings " + std::to_string(positions) +
                                "; windows of " + std::to_string(positions) + " are used");
      spec.eval["tasks"][i]["seqlen"] = positions;
    } else if (windowed && positions > 0 && t.contains("seqlen") && t["seqlen"].is_number_integer() &&
               t["seqlen"].get<int64_t>() > positions)
      v.add(at + ".seqlen", mark_of(item, "seqlen", item_at),
            "window " + std::to_string(t["seqlen"].get<int64_t>()) +
                " is longer than the model's max_position_embeddings " + std::to_string(positions) +
                " (config.json): positions past it were never trained; use at most " + std::to_string(positions));
  }
}

// The spec as it is read: the YAML document, the validator, the typed spec
// being filled, and where each section was written. Each step reads one
// part of the spec; parse_unguarded runs them in order.
class SpecReader {
 public:
  SpecReader(const YAML::Node& root, const Environment& env, Validator& v) : root_(root), env_(env), v_(v) {}

  JobSpec spec;
  json top = json::object();
  YAML::Node llm, eval_node, calib_node;
  YAML::Mark algorithm_mark;
  const AlgorithmInfo* algo = nullptr;
  std::optional<json> model_config;  // the model's config.json when it is on this machine
  bool config_readable = true;

  bool quantizes() const { return algo != nullptr && algo->name != "Evaluate"; }
  void warn(std::string message) {
    if (spec.warnings.size() < kMaxSpecIssues) spec.warnings.push_back(std::move(message));
  }
  YAML::Mark top_mark(const char* key) const { return mark_of(root_, key, root_.Mark()); }

  // Where a key of the algorithm's section was written (its path and mark),
  // else EXPORT_FORMAT's (or the document's). A key "NAME[i]" steps into item
  // i of the list NAME.
  std::pair<std::string, YAML::Mark> param_at(const std::vector<std::string>& keys) const {
    std::pair<std::string, YAML::Mark> at{"EXPORT_FORMAT", top_mark("EXPORT_FORMAT")};
    if (algo == nullptr || !llm || !llm.IsMap() || !llm[algo->name] || !llm[algo->name].IsMap()) return at;
    // reset(), not =: assigning a yaml-cpp node writes into the document.
    YAML::Node n;
    n.reset(static_cast<const YAML::Node&>(llm)[algo->name]);
    std::string path = "llm." + algo->name;
    for (const auto& key : keys) {
      const auto bracket = key.find('[');
      const std::string name = key.substr(0, bracket);
      const YAML::Node& c = n;
      if (!c.IsMap() || !c[name]) return at;
      n.reset(c[name]);
      path += "." + name;
      if (bracket != std::string::npos) {
        const auto index = parse_int(key.substr(bracket + 1, key.size() - bracket - 2));
        if (!index || !n.IsSequence() || static_cast<long long>(n.size()) <= *index) return at;
        n.reset(static_cast<const YAML::Node&>(n)[static_cast<std::size_t>(*index)]);
        path += "[" + std::to_string(*index) + "]";
      }
    }
    return {path, n.Mark()};
  }

  // Findings of the algorithm's or the format's row: errors at their key,
  // warnings carried by the job.
  void report(const std::vector<SectionFinding>& findings) {
    for (const auto& f : findings) {
      if (!f.error) {
        std::string path;
        for (const auto& k : f.keys) path += "." + k;
        warn(f.keys.empty() ? f.message : "llm." + algo->name + path + " " + f.message);
        continue;
      }
      const auto at = f.keys == std::vector<std::string>{"ALGORITHM"}
                          ? std::pair<std::string, YAML::Mark>{"ALGORITHM", algorithm_mark}
                          : param_at(f.keys);
      v_.add(at.first, at.second, f.message);
    }
  }

  void read_top_keys();
  void read_identity();
  void read_algorithm_section();
  void read_output_options();
  void check_export();
  void read_calibration();
  void read_eval();
  void map_nyuntam_eval();

 private:
  const YAML::Node& root_;
  const Environment& env_;
  Validator& v_;
};

// Every top-level key but llm, eval and calibration, each to its type.
void SpecReader::read_top_keys() {
  std::vector<std::string> top_names = {"llm", "eval", "calibration"};
  for (const auto& k : top_keys()) top_names.push_back(k.name);
  for (const auto& kv : root_) {
    const YAML::Node& key = kv.first;
    const std::string name = key.IsScalar() ? key.Scalar() : "";
    if (name == "llm" || name == "eval" || name == "calibration") {
      (name == "llm" ? llm : name == "eval" ? eval_node : calib_node) = kv.second;
      continue;
    }
    const auto it = std::find_if(top_keys().begin(), top_keys().end(), [&](const TopKey& k) { return k.name == name; });
    if (it == top_keys().end()) {
      std::string msg = "unknown key '" + excerpt(name) + "'";
      if (auto near = closest_name(name, top_names)) msg += "; did you mean '" + *near + "'?";
      v_.add(name, key.Mark(), msg);
      continue;
    }
    if (name == "ALGORITHM") algorithm_mark = kv.second.Mark();
    if (kv.second.IsNull()) continue;
    if (std::find(kServerOwnedPaths.begin(), kServerOwnedPaths.end(), name) != kServerOwnedPaths.end()) {
      spec.warnings.push_back(name + " is decided by the server; the given value '" +
                              (kv.second.IsScalar() ? excerpt(kv.second.Scalar()) : std::string("?")) + "' is ignored");
      continue;
    }
    if (auto value = v_.scalar(kv.second, it->type, name)) top[name] = *value;
    if (name == "CUDA_ID" && top.contains("CUDA_ID")) {
      std::vector<int> ids;
      for (const auto& part : split(top["CUDA_ID"].get<std::string>(), ',')) {
        const auto t = trim(part);
        if (t.empty()) continue;
        auto id = parse_int(t);
        if (!id || *id < 0 || *id > 1023) {
          v_.add(name, kv.second.Mark(),
                 "CUDA_ID must be a comma list of device numbers such as \"0\" or \"0,1\", got '" +
                     excerpt(kv.second.Scalar()) + "'");
          ids.clear();
          break;
        }
        ids.push_back(static_cast<int>(*id));
      }
      spec.cuda_ids = ids;
    }
  }
}

// The model, data, name, scheduling keys and the algorithm's row.
void SpecReader::read_identity() {
  const auto str = [&](const char* k) { return top.value(k, std::string()); };
  spec.custom_model_path = str("CUSTOM_MODEL_PATH");
  spec.model = spec.custom_model_path.empty() ? str("MODEL") : spec.custom_model_path;
  spec.dataset_name = str("DATASET_NAME");
  spec.dataset_subname = str("DATASET_SUBNAME");
  spec.data_path = str("DATA_PATH");
  for (const auto& c : split(str("TEXT_COLUMN"), ','))
    if (auto t = trim(c); !t.empty()) spec.text_columns.push_back(t);
  spec.split = str("SPLIT");
  spec.format_string = str("FORMAT_STRING");
  spec.algorithm = str("ALGORITHM");
  spec.job_service = str("JOB_SERVICE");
  spec.task = str("TASK");
  spec.algo_type = str("ALGO_TYPE");
  spec.job_id = str("JOB_ID");
  // The job's name: shown everywhere and accepted wherever an id is.
  if (spec.job_id.size() > 128 || std::any_of(spec.job_id.begin(), spec.job_id.end(),
                                              [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    v_.add("JOB_ID", top_mark("JOB_ID"),
           "JOB_ID (the job's name) must be at most 128 characters without control characters");
  else if (looks_like_job_id(spec.job_id))
    v_.add("JOB_ID", top_mark("JOB_ID"),
           "JOB_ID (the job's name) has the shape of a job id (YYYYMMDD-HHMMSS-<16 hex digits>); a name must never be "
           "taken for another job's id: choose another name");
  const auto bounded_int = [&](const char* k, long long lo, long long hi, int& out) {
    if (!top.contains(k)) return;
    const auto val = top[k].get<long long>();
    if (val < lo || val > hi) {
      v_.add(k, top_mark(k),
             std::string(k) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                 std::to_string(val));
      return;
    }
    out = static_cast<int>(val);
  };
  bounded_int("PRIORITY", -100, 100, spec.priority);
  bounded_int("MAX_ATTEMPTS", 1, 10, spec.max_attempts);
  if (top.contains("TIMEOUT_S")) {
    spec.timeout_s = top["TIMEOUT_S"].get<double>();
    if (spec.timeout_s < 0) v_.add("TIMEOUT_S", top_mark("TIMEOUT_S"), "TIMEOUT_S must be >= 0");
  }
  if (spec.model.empty())
    v_.add("MODEL", YAML::Mark::null_mark(),
           "MODEL is required: a local model directory or a Hugging Face hub id such as "
           "\"meta-llama/Meta-Llama-3.1-8B-Instruct\"");
  if (spec.algorithm.empty()) {
    v_.add("ALGORITHM", YAML::Mark::null_mark(),
           "ALGORITHM is required (one of " + Validator::join(algorithm_names(false)) + ")");
  } else if (algo = find_algorithm(spec.algorithm); algo == nullptr) {
    std::string msg = "unknown algorithm '" + excerpt(spec.algorithm) + "'";
    if (auto near = closest_name(spec.algorithm, algorithm_names(false))) msg += "; did you mean '" + *near + "'?";
    msg += " (known: " + Validator::join(algorithm_names(false)) + ")";
    v_.add("ALGORITHM", algorithm_mark, msg);
  }
}

// llm.<ALGORITHM>: validated against the algorithm's schema, defaults applied.
void SpecReader::read_algorithm_section() {
  json params = json::object();
  if (llm && !llm.IsNull() && !llm.IsMap()) {
    v_.add("llm", llm.Mark(), "expected a mapping of algorithm sections, got " + Validator::show(llm));
  } else if (llm && llm.IsMap()) {
    for (const auto& kv : llm) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
      const AlgorithmInfo* section_algo = find_algorithm(name);
      if (section_algo == nullptr) {
        std::string msg = "unknown algorithm section '" + excerpt(name) + "'";
        if (auto near = closest_name(name, algorithm_names(false))) msg += "; did you mean '" + *near + "'?";
        v_.add("llm." + name, kv.first.Mark(), msg);
        continue;
      }
      if (section_algo != algo) {
        warn("llm." + name + " is ignored: ALGORITHM is '" + excerpt(spec.algorithm) + "'");
        continue;
      }
      if (kv.second.IsNull()) continue;
      if (!kv.second.IsMap()) {
        v_.add("llm." + name, kv.second.Mark(), "expected a mapping of parameters, got " + Validator::show(kv.second));
        continue;
      }
      v_.section(kv.second, algo->params, "llm." + name, params);
    }
  }
  if (algo != nullptr) {
    apply_defaults(algo->params, params);
    if (!algo->available)
      v_.add("ALGORITHM", algorithm_mark,
             "algorithm '" + algo->name +
                 "' is not available yet in this build (available: " + Validator::join(algorithm_names(true)) + ")");
  }
  spec.params = std::move(params);
}

// DTYPE, VERIFY, EXPORT_FORMAT and the ONNX graph's shape.
void SpecReader::read_output_options() {
  spec.dtype = top.value("DTYPE", std::string("auto"));
  spec.verify = top.value("VERIFY", true);
  if (spec.dtype != "auto" && spec.dtype != "float32" && spec.dtype != "bfloat16" && spec.dtype != "float16")
    v_.add("DTYPE", top_mark("DTYPE"), "DTYPE must be auto, float32, bfloat16 or float16");
  // Packed by default: every algorithm's output has a compressed-tensors
  // form; fake_quant only when asked.
  spec.export_format = top.value("EXPORT_FORMAT", std::string(quantizes() ? "compressed-tensors" : "fake_quant"));
  if (find_export_format(spec.export_format) == nullptr) {
    std::string msg = "EXPORT_FORMAT must be one of " + Validator::join(export_format_names());
    if (auto near = closest_name(spec.export_format, export_format_names())) msg += "; did you mean '" + *near + "'?";
    v_.add("EXPORT_FORMAT", top_mark("EXPORT_FORMAT"), msg);
  }
  if (!top.contains("ONNX_SEQ_LEN") && !top.contains("ONNX_CONTEXT_LEN")) return;
  spec.onnx_seq_len = top.value("ONNX_SEQ_LEN", int64_t{128});
  spec.onnx_context_len = top.value("ONNX_CONTEXT_LEN", int64_t{1024});
  if (spec.export_format != "onnx")
    warn("ONNX_SEQ_LEN / ONNX_CONTEXT_LEN shape the ONNX export only; EXPORT_FORMAT is " + spec.export_format);
  if (spec.onnx_seq_len < 1 || spec.onnx_seq_len > 65536)
    v_.add("ONNX_SEQ_LEN", top_mark("ONNX_SEQ_LEN"), "must be 1..65536 (tokens per call of the ONNX graph)");
  else if (spec.onnx_context_len <= spec.onnx_seq_len || spec.onnx_context_len > (1 << 20))
    v_.add("ONNX_CONTEXT_LEN", top_mark("ONNX_CONTEXT_LEN"),
           "must be above ONNX_SEQ_LEN (" + std::to_string(spec.onnx_seq_len) +
               ") and at most 1048576: the graph attends over "
               "ONNX_CONTEXT_LEN - ONNX_SEQ_LEN cached positions and the new ones");
}

// The algorithm's own rules, the format's rules on its output, and what
// the model's config.json (when it is on this machine) says of both.
void SpecReader::check_export() {
  const ExportFormatRow* format = find_export_format(spec.export_format);
  std::optional<quant::WeightScheme> weights;
  AlgorithmOutput output;
  output.quantizes = quantizes();
  if (quantizes()) {
    try {
      if (algo->weights) weights = algo->weights(spec.params);
      if (algo->output) output = algo->output(spec.params);
    } catch (const Error& e) {
      v_.add("llm." + algo->name, algorithm_mark, e.what());
    }
    if (algo->check) report(algo->check(spec.params, spec.export_format));
  }
  if (format != nullptr && weights) report(format->check({*algo, output, *weights}));
  // The model's config.json, read once (the export check, the Nyuntam window
  // and the submission's file checks use it). Its family and shape are read
  // as the worker will read them: an architecture no family table
  // describes, or a key it needs that is missing or out of range, is refused
  // now rather than when the job starts.
  model_config = find_model_config(spec.model, env_.hub_caches);
  if (model_config)
    if (const auto problem = model_config_problem(*model_config, quantizes() ? spec.export_format : std::string())) {
      config_readable = false;
      const char* key = spec.custom_model_path.empty() ? "MODEL" : "CUSTOM_MODEL_PATH";
      v_.add(key, top_mark(key),
             "the model " + spec.model + " cannot be " +
                 (problem->rfind("config.json", 0) == 0 ? "read: " : "exported: ") + *problem);
    }
  if (spec.export_format == "onnx" && model_config && model_config->contains("max_position_embeddings") &&
      (*model_config)["max_position_embeddings"].is_number_integer()) {
    const int64_t positions = (*model_config)["max_position_embeddings"].get<int64_t>();
    if (top.contains("ONNX_CONTEXT_LEN") && spec.onnx_context_len > positions)
      v_.add("ONNX_CONTEXT_LEN", top_mark("ONNX_CONTEXT_LEN"),
             "is longer than the model's max_position_embeddings (" + std::to_string(positions) + ")");
  }
  // What the export cannot hold of this model's Linears (a hub id not
  // downloaded yet is checked by the worker before it quantizes). Only for
  // a config.json the worker reads: its shape is then in range, which
  // bounds this check's work.
  if (!quantizes() || !weights || format == nullptr || !config_readable || !model_config) return;
  for (const auto& f : check_export_shapes({*algo, output, *weights}, spec.export_format, *model_config)) {
    if (!f.error) {
      warn(f.message);
      continue;
    }
    const auto at = !output.fp4.empty()        ? std::pair<std::string, YAML::Mark>{"ALGORITHM", algorithm_mark}
                    : output.w_format != "int" ? param_at({"W_FORMAT"})
                                               : param_at({"Q_GROUP_SIZE"});
    v_.add(at.first, at.second, f.message);
  }
}

// calibration: {...}, and data for an algorithm that calibrates.
void SpecReader::read_calibration() {
  if (calib_node && !calib_node.IsNull()) {
    if (!calib_node.IsMap()) {
      v_.add("calibration", calib_node.Mark(), "expected a mapping, got " + Validator::show(calib_node));
    } else {
      json cal = json::object();
      v_.section(calib_node, calibration_schema(), "calibration", cal);
      spec.calibration = std::move(cal);
    }
  }
  // A calibrating algorithm with nothing to calibrate on would fail only
  // after the model is loaded: refuse it at submission.
  if (algo == nullptr || !algo->available || !algorithm_needs_data(*algo, spec.params)) return;
  if (spec.data_path.empty() && spec.dataset_name.empty() &&
      spec.calibration.value("data_path", std::string()).empty() &&
      spec.calibration.value("dataset", std::string()).empty())
    v_.add("DATA_PATH", root_["ALGORITHM"] ? root_["ALGORITHM"].Mark() : root_.Mark(),
           "ALGORITHM " + algo->name +
               " calibrates on text: set DATA_PATH (a local .jsonl, .json or .txt file), "
               "DATASET_NAME, or calibration.data_path / calibration.dataset");
}

// eval: {tasks: [...]}, each task's defaults applied.
void SpecReader::read_eval() {
  if (!eval_node || eval_node.IsNull()) return;
  if (!eval_node.IsMap()) {
    v_.add("eval", eval_node.Mark(), "expected a mapping with 'tasks', got " + Validator::show(eval_node));
    return;
  }
  json ev = json::object();
  v_.section(eval_node, eval_schema(), "eval", ev);
  if (ev.contains("tasks")) {
    for (std::size_t i = 0; i < ev["tasks"].size(); ++i) {
      auto& task = ev["tasks"][i];
      const std::string at = "eval.tasks[" + std::to_string(i) + "]";
      const YAML::Mark item_at = item_mark(eval_node, "tasks", i);
      const EvalTaskInfo* row = find_eval_task(task.value("type", std::string()));
      if (row == nullptr) {
        // A type the schema refused is reported already.
        if (!task.contains("type")) v_.add(at, item_at, "every task needs a type (" + eval_task_types_text() + ")");
        continue;
      }
      const YAML::Node item = list_item(eval_node, "tasks", i);
      for (const auto& [key, message] : check_eval_task(*row, task)) {
        // At the key, as an unknown key is.
        YAML::Mark where = item_at;
        if (item && item.IsMap())
          for (const auto& kv : item)
            if (kv.first.IsScalar() && kv.first.Scalar() == key) where = kv.first.Mark();
        v_.add(at + "." + key, where, message);
      }
    }
  }
  spec.eval = std::move(ev);
}

// Nyuntam's LMQuant `eval.tasks` become qjobs eval tasks unless the spec
// has its own eval section, which then wins, and the job says so.
void SpecReader::map_nyuntam_eval() {
  const bool nyuntam_tasks =
      spec.params.contains("eval") && spec.params["eval"].is_object() && spec.params["eval"].contains("tasks");
  if (!nyuntam_tasks) return;
  if (spec.eval.contains("tasks")) {
    warn("llm." + spec.algorithm + ".eval.tasks is ignored: the top-level eval section's tasks are run instead");
    return;
  }
  YAML::Mark mark = llm ? llm.Mark() : YAML::Mark::null_mark();
  if (algo != nullptr && llm && llm.IsMap() && llm[algo->name] && llm[algo->name].IsMap())
    for (const auto& kv : llm[algo->name]) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
      if (key == "eval.tasks") mark = kv.second.Mark();
      else if (key == "eval" && kv.second.IsMap() && kv.second["tasks"]) mark = kv.second["tasks"].Mark();
    }
  int64_t max_len = spec.params["eval"].value("max_seq_length", int64_t{0});
  // Nyuntam's window is written for the model it was tuned on: on a model
  // with fewer positions it is cut to the model's, and the job says so.
  if (model_config && model_config->contains("max_position_embeddings") &&
      (*model_config)["max_position_embeddings"].is_number_integer()) {
    const int64_t positions = (*model_config)["max_position_embeddings"].get<int64_t>();
    if (positions > 0 && (max_len > positions || (max_len <= 0 && positions < 2048))) {
      warn("llm." + spec.algorithm + ".eval.max_seq_length " + std::to_string(max_len > 0 ? max_len : 2048) +
           " is longer than the model's max_position_embeddings " + std::to_string(positions) +
           ": its tasks are evaluated with windows of " + std::to_string(positions));
      max_len = positions;
    }
  }
  json tasks = json::array();
  for (const auto& t : spec.params["eval"]["tasks"]) {
    const auto mapped = map_nyuntam_eval_task(t.get<std::string>(), max_len);
    if (mapped.is_string()) v_.add("llm." + spec.algorithm + ".eval.tasks", mark, mapped.get<std::string>());
    else tasks.push_back(mapped);
  }
  spec.eval["tasks"] = tasks;
}

// The document, checked before anything walks it: UTF-8, YAML, its size
// with aliases expanded, a mapping. nullopt (with the issue recorded) when
// it is refused.
std::optional<YAML::Node> load_document(std::string_view yaml_text, Validator& v, bool& too_large) {
  if (std::size_t bad = 0; !valid_utf8(yaml_text, &bad)) {
    // Line and column (1-based, in bytes) of the first byte that is not UTF-8.
    const auto before = yaml_text.substr(0, bad);
    const auto nl = before.rfind('\n');
    YAML::Mark m;
    m.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
    m.column = static_cast<int>(nl == std::string_view::npos ? bad : bad - nl - 1);
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(yaml_text[bad]));
    v.add("", m, std::string("the spec is not valid UTF-8: byte ") + hex + " at offset " + std::to_string(bad));
    return std::nullopt;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    v.add("", e.mark, "malformed YAML: " + e.msg);
    return std::nullopt;
  }
  // Aliases share one node in the parsed tree but are copied into spec.json:
  // bound the expanded size before anything walks it.
  if (const auto size = expanded_size(root); size.nodes > kMaxSpecNodes || size.bytes > kMaxSpecBytes) {
    v.add("", root.Mark(),
          "the spec expands to more than " + std::to_string(kMaxSpecNodes) + " nodes or " +
              std::to_string(kMaxSpecBytes) +
              " bytes of scalars once its YAML aliases are expanded (each use of an alias counts in full)");
    too_large = true;
    return std::nullopt;
  } else if (size.bad_utf8) {
    v.add("", *size.bad_utf8,
          "a string is not valid UTF-8 once its escape sequences are decoded (write the character itself, or \\u "
          "with a code point that is not a surrogate)");
    return std::nullopt;
  }
  if (!root.IsMap()) {
    v.add("", root.Mark(),
          root.IsNull() ? "the spec is empty; expected a mapping of keys such as MODEL and ALGORITHM"
                        : "the spec must be a mapping of keys, got " + Validator::show(root));
    return std::nullopt;
  }
  return root;
}

SpecParseResult parse_unguarded(std::string_view yaml_text, const SpecContext& context) {
  SpecParseResult result;
  Validator v;
  const auto root = load_document(yaml_text, v, result.too_large);
  if (!root) {
    result.issues = v.finish();
    return result;
  }
  static const Environment empty;
  const Environment& env = context.env != nullptr ? *context.env : empty;
  SpecReader r(*root, env, v);
  r.read_top_keys();
  r.read_identity();
  r.read_algorithm_section();
  r.read_output_options();
  r.check_export();
  r.read_calibration();
  r.read_eval();
  r.map_nyuntam_eval();
  if (context.local_files) check_local_files(r.spec, *root, r.calib_node, r.eval_node, r.model_config, env, v);
  if (r.spec.algorithm == "Evaluate" && (!r.spec.eval.contains("tasks") || r.spec.eval["tasks"].empty()))
    v.add("eval", r.eval_node ? r.eval_node.Mark() : r.algorithm_mark,
          "ALGORITHM: Evaluate needs an eval section with tasks (" + eval_task_types_text() + ")");
  result.issues = v.finish();
  if (result.issues.empty()) {
    result.spec = std::move(r.spec);
    if (r.config_readable) result.model_config = std::move(r.model_config);
  }
  return result;
}

}  // namespace

}  // namespace qjobs
