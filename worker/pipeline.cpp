#include "worker/pipeline.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <new>
#include <thread>

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/job_spec.hpp"
#include "common/job_state.hpp"
#include "common/logging.hpp"
#include "common/algorithm_catalog.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_source.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/registry.hpp"
#include "jobs/tokenizer/tokenizer.hpp"
#include "worker/status_reporter.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Raised inside a stage to carry the failure type the stage stands for.
struct StageFailure {
  ErrorType type;
  std::string message;
};

// Which failure type an error in `stage` means: a file problem while loading
// is MODEL_LOAD, while reading data it is DATA; bad input is VALIDATION
// everywhere; a bug is INTERNAL.
ErrorType classify(const std::string& stage, ErrorKind kind) {
  // Whatever stops the model from loading (missing, gated, corrupt,
  // unsupported) is MODEL_LOAD.
  if (stage == "load" && kind != ErrorKind::oom && kind != ErrorKind::cancelled && kind != ErrorKind::internal)
    return ErrorType::model_load;
  switch (kind) {
    case ErrorKind::invalid_input: return ErrorType::validation;
    case ErrorKind::oom: return ErrorType::oom;
    case ErrorKind::not_found:
    case ErrorKind::io:
    case ErrorKind::data_corruption:
      if (stage == "load") return ErrorType::model_load;
      if (stage == "data" || stage == "baseline" || stage == "evaluate") return ErrorType::data;
      return ErrorType::internal;
    default: return ErrorType::internal;
  }
}

uint64_t dir_size(const fs::path& p) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(p))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

uint64_t checkpoint_size(const model::Checkpoint& ckpt) {
  uint64_t total = 0;
  for (const auto& f : ckpt.files()) total += fs::file_size(f->path());
  return total;
}

// A test hook: QJOBS_TEST_STEP_DELAY_MS slows every progress step so that a
// test can kill or cancel a worker in the middle of its work.
int step_delay_ms() {
  const char* v = std::getenv("QJOBS_TEST_STEP_DELAY_MS");
  return v ? std::atoi(v) : 0;
}

// The output is always safetensors: pytorch_model-00001-of-00002.bin is
// written as model-00001-of-00002.safetensors, as transformers names shards.
std::string safetensors_name(const std::string& input) {
  std::string stem = input;
  if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".bin") == 0) {
    stem = stem.substr(0, stem.size() - 4);
    if (stem.rfind("pytorch_model", 0) == 0) stem = "model" + stem.substr(13);
    return stem + ".safetensors";
  }
  return input;
}

void package(const model::Checkpoint& ckpt, const quant::QuantOutput& q, const JobDir& dir, const JobSpec& spec,
             StatusReporter& rep) {
  const fs::path out = dir.model_dir();
  fs::remove_all(out);
  fs::create_directories(out);
  const auto format = exporter::packed_format(spec.export_format);
  const bool packed = format.has_value();
  if (packed && q.int_weights.empty())
    throw Error(ErrorKind::invalid_input, "ALGORITHM " + spec.algorithm + " has no integer form for EXPORT_FORMAT " + spec.export_format);
  json config = ckpt.config();
  json qc = packed ? exporter::packed_quantization_config(q.int_weights, *format, spec.params) : q.quantization_config;
  const auto total = static_cast<int64_t>(ckpt.files().size()) + 1;
  int64_t done = 0;
  json weight_map = json::object();
  uint64_t total_bytes = 0;
  for (const auto& file_ptr : ckpt.files()) {
    const auto& file = *file_ptr;
    const std::string out_name = safetensors_name(file.path().filename().string());
    std::vector<model::NamedTensor> tensors;
    for (const auto& info : file.tensors()) {
      const std::string stem = info.name.size() > 7 ? info.name.substr(0, info.name.size() - 7) : info.name;
      const auto iw = q.int_weights.find(stem);
      if (packed && info.name.size() > 7 && info.name.compare(info.name.size() - 7, 7, ".weight") == 0 &&
          iw != q.int_weights.end()) {
        for (auto& [suffix, t] : exporter::pack(iw->second, *format, model::st_to_aten(info.dtype))) tensors.push_back({stem + "." + suffix, t, {}});
        continue;
      }
      const auto it = q.replaced.find(info.name);
      tensors.push_back({info.name, it != q.replaced.end() ? it->second : file.tensor(info.name),
                         info.dtype == model::StDtype::F8_E4M3 || info.dtype == model::StDtype::F8_E5M2
                             ? std::optional<model::StDtype>(info.dtype)
                             : std::nullopt});
    }
    for (const auto& t : tensors) {
      weight_map[t.name] = out_name;
      total_bytes += static_cast<uint64_t>(t.tensor.numel()) * t.tensor.element_size();
    }
    model::save_safetensors(out / out_name, tensors);
    rep.progress(++done, total, out_name);
  }
  if (ckpt.sharded())
    write_file_atomic(out / "model.safetensors.index.json",
                      json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}.dump(2));
  // A fake-quant model is a plain float checkpoint: transformers and vLLM
  // would refuse a quantization_config whose quant_method they do not know,
  // so the recipe is recorded under qjobs' own key instead.
  config.erase("quantization_config");
  config[packed ? "quantization_config" : "qjobs_quantization"] = qc;
  write_file_atomic(out / "config.json", config.dump(2));
  for (const auto& f : ckpt.companion_files())
    fs::copy_file(f, out / f.filename(), fs::copy_options::overwrite_existing);
  rep.progress(++done, total, "config.json");
}

// Runs every eval task on `model_dir`'s model; results keyed by task name.
json evaluate(const JobSpec& spec, const fs::path& model_dir, const std::string& which, const JobDir& dir,
              StatusReporter& rep) {
  const auto ckpt = model::Checkpoint::open(model_dir);
  model::LoadOptions lo;  // evaluation
  lo.dtype = spec.dtype == "bfloat16" ? at::kBFloat16 : spec.dtype == "float16" ? at::kHalf : at::kFloat;
  const auto m = model::LlamaModel::load(ckpt, lo);
  const auto tok = tokenizer::Tokenizer::load(model_dir);
  const auto& tasks = spec.eval["tasks"];
  json results = json::object();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto& task = tasks[i];
    const std::string name = task.value("name", task.value("type", "task"));
    auto r = eval::run_task(m, tok, task, [&](int64_t d, int64_t t) { rep.progress(d, t, name); });
    if (r.contains("ppl")) rep.metric("ppl_" + which + "_" + name, r["ppl"]);
    write_file_atomic(dir.eval_dir() / (which + "-" + name + ".json"), r.dump(2));
    results[name] = std::move(r);
  }
  return results;
}

void write_report(const JobSpec& spec, const fs::path& model_dir, uint64_t size_before,
                  uint64_t size_after, const quant::QuantOutput& q, const JobDir& dir,
                  StatusReporter& rep, const json& before, const json& after) {
  json layers = json::array();
  double worst = 0;
  for (const auto& e : q.layer_errors) {
    layers.push_back({{"name", e.name}, {"rel_fro_err", e.rel_fro_err}, {"max_abs_err", e.max_abs_err},
                      {"rel_out_err", e.rel_out_err < 0 ? json(nullptr) : json(e.rel_out_err)}});
    worst = std::max(worst, e.rel_fro_err);
  }
  const double mib = 1024.0 * 1024.0;
  json report = {
      {"spec", to_json(spec)},
      {"model", {{"source", spec.model}, {"resolved", model_dir.string()}}},
      {"algorithm", spec.algorithm},
      {"quantization_config", q.quantization_config},
      {"size_mib", {{"before", size_before / mib}, {"after", size_after / mib}}},
      {"metrics", rep.metrics()},
      {"layers", layers},
      {"stage_seconds", rep.stage_seconds()},
      {"eval", {{"original", before}, {"quantized", after}}},
  };
  write_file_atomic(dir.report_json(), report.dump(2));

  std::string md = "# qjobs report: " + spec.algorithm + " on " + spec.model + "\n\n";
  md += "| | before | after |\n|---|---|---|\n";
  char line[256];
  std::snprintf(line, sizeof line, "| size on disk (MiB) | %.2f | %.2f |\n", size_before / mib, size_after / mib);
  md += line;
  for (auto& [name, b] : before.items()) {
    if (!b.contains("ppl") || !after.contains(name)) continue;
    std::snprintf(line, sizeof line, "| %s perplexity (seqlen %d, %d windows) | %.4f | %.4f |\n", name.c_str(),
                  b.value("seqlen", 0), b.value("windows", 0), b["ppl"].get<double>(), after[name]["ppl"].get<double>());
    md += line;
  }
  md += "\nQuantization: `" + q.quantization_config.dump() + "`\n\n";
  for (auto& [name, b] : before.items()) {
    if (!b.contains("answers")) continue;
    md += "## " + name + "\n\n";
    for (std::size_t i = 0; i < b["answers"].size(); ++i) {
      md += "**Prompt:** " + b["answers"][i]["prompt"].get<std::string>() + "\n\n";
      md += "- original: " + b["answers"][i]["response"].get<std::string>() + "\n";
      if (after.contains(name)) md += "- quantized: " + after[name]["answers"][i]["response"].get<std::string>() + "\n";
      md += "\n";
    }
  }
  std::snprintf(line, sizeof line, "Weight error: %zu layers, worst relative Frobenius error %.4f\n\n",
                q.layer_errors.size(), worst);
  md += line;
  md += "Time per stage (s):";
  for (auto& [st, secs] : rep.stage_seconds().items()) {
    std::snprintf(line, sizeof line, " %s %.2f;", st.c_str(), secs.get<double>());
    md += line;
  }
  md += "\n\n| layer | rel. weight error | max abs error | rel. output error |\n|---|---|---|---|\n";
  for (const auto& e : q.layer_errors) {
    std::snprintf(line, sizeof line, "| %s | %.5f | %.5f | %s |\n", e.name.c_str(), e.rel_fro_err, e.max_abs_err,
                  e.rel_out_err < 0 ? "-" : std::to_string(e.rel_out_err).c_str());
    md += line;
  }
  write_file_atomic(dir.report_md(), md);
}

}  // namespace

int run_job(const fs::path& spec_path, const fs::path& job_dir) {
  const JobDir dir(job_dir);
  dir.create_layout();
  setup_logging("worker", dir.worker_log());
  const char* attempt_env = std::getenv("QJOBS_ATTEMPT");
  const int attempt = attempt_env ? std::max(1, std::atoi(attempt_env)) : 1;
  spdlog::info("qjobs-worker pid {} attempt {} spec {} job dir {}", ::getpid(), attempt,
               spec_path.string(), job_dir.string());

  std::vector<std::string> stages = {"load", "quantize", "package", "report"};
  std::string yaml_early;
  try {
    yaml_early = read_file(spec_path);
  } catch (const Error&) {
  }
  const auto early = parse_job_spec(yaml_early);
  const bool has_eval = early.spec && early.spec->eval.contains("tasks") && !early.spec->eval["tasks"].empty();
  if (has_eval) stages = {"load", "baseline", "quantize", "package", "evaluate", "report"};
  StatusReporter rep(dir, stages, attempt);
  std::string stage = "validate";
  try {
    std::string yaml;
    try {
      yaml = read_file(spec_path);
    } catch (const Error& e) {
      throw StageFailure{ErrorType::validation, e.what()};
    }
    auto parsed = parse_job_spec(yaml);
    if (!parsed.spec) {
      std::string msg = "invalid spec:";
      for (const auto& i : parsed.issues)
        msg += " " + i.path + " (line " + std::to_string(i.line) + ", column " +
               std::to_string(i.column) + "): " + i.message + ";";
      throw StageFailure{ErrorType::validation, msg};
    }
    const JobSpec spec = *parsed.spec;
    if (attempt == 1)
      for (const auto& w : spec.warnings) rep.warn(w);
    auto algorithm = quant::make_algorithm(spec.algorithm);
    if (!algorithm)
      throw StageFailure{ErrorType::validation,
                         "algorithm '" + spec.algorithm + "' has no implementation in this worker"};
    const int delay = step_delay_ms();

    stage = "load";
    rep.begin_stage(stage, 1);
    const fs::path model_dir = model::resolve_model_dir(spec.model, [&](uint64_t done, uint64_t total) {
      rep.progress(static_cast<int64_t>(done >> 20), static_cast<int64_t>(total >> 20), "download MiB");
    });
    const auto ckpt = model::Checkpoint::open(model_dir);
    const uint64_t size_before = checkpoint_size(ckpt);
    rep.metric("model_size_mib", size_before / (1024.0 * 1024.0));
    if (has_eval) tokenizer::Tokenizer::load(model_dir);  // fail now, not after quantizing
    rep.progress(1, 1);

    json before = json::object(), after = json::object();
    if (has_eval) {
      stage = "baseline";
      rep.begin_stage(stage);
      before = evaluate(spec, model_dir, "original", dir, rep);
    }

    stage = "quantize";
    rep.begin_stage(stage);
    quant::QuantInputs qin;
    qin.ckpt = &ckpt;
    qin.params = spec.params;
    qin.compute.dtype = spec.dtype == "bfloat16" ? at::kBFloat16 : spec.dtype == "float16" ? at::kHalf : at::kFloat;
    qin.state_dir = job_dir / "calib_state";
    qin.progress = [&](int64_t d, int64_t t, const std::string& what) {
      if (delay > 0 && d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      rep.progress(d, t, what);
    };
    qin.calibration = [&]() -> at::Tensor {
      const AlgorithmInfo* info = find_algorithm(spec.algorithm);
      const json& c = spec.calibration;
      data::DatasetSpec ds;
      ds.path = c.value("data_path", spec.data_path);
      ds.name = c.value("dataset", spec.dataset_name);
      ds.subname = c.value("subset", spec.dataset_subname);
      ds.split = c.value("split", spec.split.empty() ? std::string("train") : spec.split);
      ds.format_string = spec.format_string;
      ds.text_columns = spec.text_columns;
      if (c.contains("text_column")) {
        ds.text_columns.clear();
        for (const auto& col : split(c["text_column"].get<std::string>(), ','))
          if (auto t = trim(col); !t.empty()) ds.text_columns.push_back(t);
      }
      const int64_t n = c.value("n_samples", info ? info->calib_samples : 128);
      const int64_t seqlen = c.value("seqlen", info ? info->calib_seqlen : 512);
      try {
        if (ds.path.empty() && ds.name.empty())
          throw Error(ErrorKind::not_found, spec.algorithm + " needs calibration data: set calibration.data_path, "
                                            "DATA_PATH or DATASET_NAME");
        const auto ids = data::calibration_windows(tokenizer::Tokenizer::load(model_dir), data::load_rows(ds), n, seqlen,
                                                   c.value("seed", uint64_t{0}));
        rep.event({{"type", "calibration"}, {"samples", n}, {"seqlen", seqlen},
                   {"data", ds.path.empty() ? ds.name + ":" + ds.split : ds.path}});
        return ids;
      } catch (const Error& e) {
        throw StageFailure{ErrorType::data, std::string("calibration data: ") + e.what()};
      }
    };
    const auto q = algorithm->run(qin);
    if (q.resumed_blocks > 0) rep.event({{"type", "resumed"}, {"blocks", q.resumed_blocks}});
    double mean_err = 0;
    for (const auto& e : q.layer_errors) mean_err += e.rel_fro_err;
    if (!q.layer_errors.empty()) rep.metric("weight_rel_err_mean", mean_err / q.layer_errors.size());

    stage = "package";
    rep.begin_stage(stage);
    package(ckpt, q, dir, spec, rep);
    const uint64_t size_after = dir_size(dir.model_dir());
    rep.metric("packaged_size_mib", size_after / (1024.0 * 1024.0));

    if (has_eval) {
      stage = "evaluate";
      rep.begin_stage(stage);
      after = evaluate(spec, dir.model_dir(), "quantized", dir, rep);
    }

    std::error_code ec;
    fs::remove_all(job_dir / "calib_state", ec);  // only needed to resume this run

    stage = "report";
    rep.begin_stage(stage, 1);
    write_report(spec, model_dir, size_before, size_after, q, dir, rep, before, after);
    rep.progress(1, 1);
    rep.succeed();
    spdlog::info("job done: {}", dir.model_dir().string());
    return worker_exit::ok;
  } catch (const StageFailure& f) {
    spdlog::error("{}: {}", stage, f.message);
    rep.fail(f.type, f.message);
    return exit_code_for(f.type);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::cancelled) {
      spdlog::warn("{}: cancelled", stage);
      rep.event({{"type", "cancelled"}, {"stage", stage}});
      return worker_exit::cancelled;
    }
    const auto type = classify(stage, e.kind());
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(type, stage + ": " + e.what());
    return exit_code_for(type);
  } catch (const std::bad_alloc&) {
    spdlog::error("{}: out of memory", stage);
    rep.fail(ErrorType::oom, stage + ": out of memory");
    return worker_exit::oom;
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    const bool oom = msg.find("out of memory") != std::string::npos;
    spdlog::error("{}: {}", stage, msg);
    rep.fail(oom ? ErrorType::oom : ErrorType::internal, stage + ": " + msg);
    return oom ? worker_exit::oom : worker_exit::internal;
  } catch (const std::exception& e) {
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(ErrorType::internal, stage + ": " + e.what());
    return worker_exit::internal;
  }
}

}  // namespace qjobs::worker
