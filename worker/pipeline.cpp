#include "worker/pipeline.hpp"

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <new>
#include <system_error>
#include <thread>

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include "common/environment.hpp"
#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "spec/job_spec.hpp"
#include "common/job_state.hpp"
#include "spec/export_formats.hpp"
#include "spec/algorithm_catalog.hpp"
#include "common/logging.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/baseline_cache.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/device.hpp"
#include "jobs/model/mapped_file.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_config.hpp"
#include "jobs/model/model_source.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/quant/calibration.hpp"
#include "jobs/quant/layer_plan.hpp"
#include "jobs/quant/registry.hpp"
#include "jobs/tokenizer/tokenizer.hpp"
#include "worker/export_format.hpp"
#include "worker/report.hpp"
#include "worker/status_reporter.hpp"
#include "worker/verify.hpp"

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
  if (kind == ErrorKind::no_space) return ErrorType::no_space;
  switch (kind) {
    case ErrorKind::invalid_input:
      return ErrorType::validation;
    case ErrorKind::oom:
      return ErrorType::oom;
    case ErrorKind::not_found:
    case ErrorKind::io:
    case ErrorKind::data_corruption:
      if (stage == "load") return ErrorType::model_load;
      if (stage == "data" || stage == "baseline" || stage == "evaluate") return ErrorType::data;
      return ErrorType::internal;
    default:
      return ErrorType::internal;
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

// A test hook (TestHooks::corrupt_packed): the named tensor of the written
// model has its first element's sign bit flipped in its file before the
// verify stage, as a writer bug or a damaged copy would leave it.
void corrupt_for_test(const fs::path& model_dir, const std::string& name) {
  if (name.empty()) return;
  const auto ckpt = model::Checkpoint::open(model_dir);
  for (const auto& f : ckpt.files()) {
    const auto* info = f->find(name);
    if (info == nullptr) continue;
    std::fstream io(f->path(), std::ios::in | std::ios::out | std::ios::binary);
    uint64_t header = 0;
    io.read(reinterpret_cast<char*>(&header), 8);
    const uint64_t element = (info->end - info->begin) / static_cast<uint64_t>(ckpt.tensor(name).numel());
    const auto at =
        static_cast<std::streamoff>(8 + header + info->begin + element - 1);  // little endian: the sign byte
    char byte = 0;
    io.seekg(at);
    io.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x80);
    io.seekp(at);
    io.write(&byte, 1);
    spdlog::warn("test hook: flipped the sign of {}[0] in {}", name, f->path().string());
    return;
  }
}

model::LoadOptions load_options(const model::Placement& place, bool stream) {
  model::LoadOptions lo;
  lo.dtype = place.dtype;
  lo.device = place.device;
  lo.devices = place.devices;
  lo.stream_layers = stream;
  return lo;
}

// Whether evaluation keeps the whole model on the device: on the CPU when
// the weights are mapped in the compute dtype already (no copy at all), on
// GPUs when the model in the compute dtype takes at most 80% of their free
// memory. Otherwise it is streamed, block by block.
bool fits_resident(const model::Checkpoint& ckpt, const model::Placement& place) {
  int64_t elements = 0;
  // A packed checkpoint is dequantized on reading: never a free view.
  bool same_dtype = !ckpt.config().contains("quantization_config");
  for (const auto& name : ckpt.tensor_names()) {
    const auto& info = ckpt.info(name);
    int64_t n = 1;
    for (auto d : info.shape) n *= d;
    elements += n;
    same_dtype = same_dtype && model::st_to_aten(info.dtype) == place.dtype;
  }
  if (place.device.is_cpu()) return same_dtype;
  int64_t free_bytes = 0;
  for (const auto& d : place.devices)
    if (auto m = model::device_memory(d)) free_bytes += m->first;
  return static_cast<double>(elements) * static_cast<double>(c10::elementSize(place.dtype)) <=
         0.8 * static_cast<double>(free_bytes);
}

// Runs every eval task on `model_dir`'s model; results keyed by task name.
// With `use_cache` (the unquantized model), each task's result is taken from
// the baseline cache when its fingerprint is there, and stored otherwise;
// the model is only loaded when some task must run.
json evaluate(const JobSpec& spec, const Environment& env, const fs::path& model_dir, const std::string& which,
              const JobDir& dir, StatusReporter& rep, bool use_cache, const model::Placement& place) {
  const auto ckpt = model::Checkpoint::open(model_dir);
  model::LoadOptions lo = load_options(place, false);  // evaluation
  lo.stream_layers = !fits_resident(ckpt, place);
  if (lo.stream_layers)
    rep.event({{"type", "streamed"},
               {"stage", which},
               {"why", "the model does not fit " + place.device.str() + " in " +
                           std::string(c10::toString(place.dtype)) + " at once"}});
  std::optional<model::LlamaModel> m;
  std::optional<tokenizer::Tokenizer> tok;
  const auto& tasks = spec.eval["tasks"];
  json results = json::object();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto& task = tasks[i];
    const std::string name = task.value("name", task.value("type", "task"));
    const std::string fp = use_cache ? eval::eval_fingerprint(ckpt, task, at::toString(lo.dtype), env.data_dir) : "";
    json r;
    if (auto hit = use_cache ? eval::load_baseline(env.cache_dir, fp) : std::nullopt) {
      r = std::move(*hit);
      r["cached"] = {{"fingerprint", fp}};
      rep.event({{"type", "baseline_cached"}, {"task", name}, {"fingerprint", fp}});
      rep.progress(1, 1, name + " (cached)");
    } else {
      if (!m) {
        m.emplace(model::LlamaModel::load(ckpt, lo));
        tok.emplace(tokenizer::Tokenizer::load(model_dir));
      }
      r = eval::run_task(*m, *tok, task, env.data_dir, [&](int64_t d, int64_t t) { rep.progress(d, t, name); });
      if (use_cache && eval::store_baseline(env.cache_dir, fp, r))
        rep.event({{"type", "baseline_stored"}, {"task", name}, {"fingerprint", fp}});
    }
    if (r.contains("ppl")) rep.metric("ppl_" + which + "_" + name, r["ppl"]);
    if (r.contains("acc")) rep.metric("acc_" + which + "_" + name, r["acc"]);
    write_file_atomic(dir.eval_dir() / (which + "-" + name + ".json"), r.dump(2));
    results[name] = std::move(r);
  }
  return results;
}

// Peak memory per stage: the host's VmHWM (peak RSS, mapped checkpoint
// pages included) as it stands at the end of each stage, and the device's
// peak allocation within each stage.
struct MemoryMeter {
  const model::Placement* place = nullptr;
  std::string current;
  json host = json::object(), device = json::object();

  static double mib(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }
  json start = json::object();  // RSS as each stage begins
  void begin(const std::string& stage) {
    close();
    current = stage;
    start[stage] = mib(model::host_rss_bytes());
  }
  void close() {
    if (current.empty()) return;
    host[current] = mib(model::host_peak_bytes());
    if (place != nullptr)
      if (const auto d = model::device_peak_bytes(place->devices)) {
        device[current] = mib(*d);
        model::reset_device_peak(place->devices);
      }
    current.clear();
  }
  json to_json(uint64_t checkpoint_bytes, uint64_t disk_peak_bytes) const {
    double host_max = 0, device_max = 0;
    for (const auto& [k, v] : host.items()) host_max = std::max(host_max, v.get<double>());
    for (const auto& [k, v] : device.items()) device_max = std::max(device_max, v.get<double>());
    return {{"placement", place ? json(place->describe()) : json(nullptr)},
            {"checkpoint_mib", mib(static_cast<int64_t>(checkpoint_bytes))},
            {"host_peak_mib", host_max},
            {"host_peak_mib_by_stage", host},
            {"host_rss_mib_at_stage_start", start},
            {"disk_peak_mib", mib(static_cast<int64_t>(disk_peak_bytes))},
            {"device_peak_mib", device.empty() ? json(nullptr) : json(device_max)},
            {"device_peak_mib_by_stage", device.empty() ? json(nullptr) : device}};
  }
};

// What the stages hand each other: each reads what the stages before it
// wrote. run_job owns it; one thread.
struct JobRun {
  const JobSpec& spec;
  const Environment& env;
  const JobDir& dir;
  StatusReporter& rep;
  const ExportFormat* format = nullptr;              // null for Evaluate
  std::unique_ptr<quant::QuantAlgorithm> algorithm;  // null for Evaluate
  model::Placement place;
  // load
  fs::path model_dir;
  std::optional<model::Checkpoint> ckpt;
  std::optional<model::ModelConfig> config;  // of ckpt, read once
  uint64_t size_before = 0;
  // baseline, evaluate: results by task name
  json before = json::object(), after = json::object();
  // quantize
  LinearPlan plan;  // built by the quantize stage
  std::optional<quant::QuantOutput> q;
  // package
  ExportResult written;
  fs::path scored;  // what the evaluation reads back of the written model
  json verified;    // verify: the reference loader, its figures, passed / failed
  uint64_t size_after = 0;
};

bool has_eval(const JobSpec& spec) { return spec.eval.contains("tasks") && !spec.eval["tasks"].empty(); }
bool quantizes(const JobSpec& spec) { return spec.algorithm != "Evaluate"; }

void load_stage(JobRun& r) {
  r.rep.begin_stage("load", 1);
  r.model_dir = model::resolve_model_dir(r.spec.model, r.env, [&](uint64_t done, uint64_t total) {
    r.rep.progress(static_cast<int64_t>(done >> 20), static_cast<int64_t>(total >> 20), "download MiB");
  });
  r.ckpt.emplace(model::Checkpoint::open(r.model_dir));
  r.config.emplace(model::ModelConfig::from_json(r.ckpt->config()));
  // The submission checked the export against config.json when the model
  // was on the server's machine; a model downloaded just now is checked here,
  // before any work.
  if (r.format) {
    for (const auto& f : check_export_shapes(r.spec.algorithm, r.spec.export_format, r.spec.params, r.ckpt->config()))
      if (f.error)
        throw StageFailure{ErrorType::validation, "EXPORT_FORMAT " + r.spec.export_format + ": " + f.message};
    if (r.format->check) {
      try {
        r.format->check(r.spec, *r.config);
      } catch (const Error& e) {
        throw StageFailure{ErrorType::validation, e.what()};
      }
    }
  }
  r.size_before = checkpoint_size(*r.ckpt);
  r.rep.metric("model_size_mib", r.size_before / (1024.0 * 1024.0));
  if (has_eval(r.spec)) tokenizer::Tokenizer::load(r.model_dir);  // fail now, not after quantizing
  r.rep.progress(1, 1);
}

void baseline_stage(JobRun& r) {
  r.rep.begin_stage("baseline");
  r.before = evaluate(r.spec, r.env, r.model_dir, "original", r.dir, r.rep, true, r.place);
}

// Calibration token windows, [n, seqlen], from the spec's calibration
// section over its DATA_PATH / DATASET_NAME defaults and the algorithm's
// sample counts, and where their text came from. Read only when the
// algorithm asks.
struct CalibrationWindows {
  at::Tensor ids;  // [n, seqlen], int64
  std::string source;
};

CalibrationWindows calibration_windows(const JobSpec& spec, const Environment& env, const fs::path& model_dir) {
  const AlgorithmInfo* info = find_algorithm(spec.algorithm);
  const json& c = spec.calibration;
  data::DatasetSpec ds;
  ds.root = env.data_dir;
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
      throw Error(ErrorKind::not_found, spec.algorithm +
                                            " needs calibration data: set calibration.data_path, "
                                            "DATA_PATH or DATASET_NAME");
    return {data::calibration_windows(tokenizer::Tokenizer::load(model_dir), data::load_rows(ds), n, seqlen,
                                      c.value("seed", uint64_t{0})),
            ds.path.empty() ? ds.name + ":" + ds.split : ds.path};
  } catch (const Error& e) {
    throw StageFailure{ErrorType::data, std::string("calibration data: ") + e.what()};
  }
}

at::Tensor calibration_windows(JobRun& r) {
  auto w = calibration_windows(r.spec, r.env, r.model_dir);
  r.rep.event({{"type", "calibration"}, {"samples", w.ids.size(0)}, {"seqlen", w.ids.size(1)}, {"data", w.source}});
  return w.ids;
}

void quantize_stage(JobRun& r) {
  r.rep.begin_stage("quantize");
  const auto& ckpt = *r.ckpt;
  quant::QuantInputs qin;
  qin.ckpt = &ckpt;
  qin.params = r.spec.params;
  // Calibration always streams: one block on the device at a time.
  qin.compute = load_options(r.place, true);
  qin.state_dir = r.dir.root() / "calib_state";
  qin.keep_float_weights = !r.format->packed;
  qin.packed_export = r.format->packed;
  qin.keep_int_codes = !r.format->float_only;
  qin.column_order_groups = r.format->column_order_groups;
  // The per-Linear plan, built once from the section and the checkpoint's
  // widths (spec/linear_plan.hpp: overrides, and per-channel groups for
  // widths the group size does not divide, in every export form).
  r.plan = quant::plan_linears(r.spec.algorithm, r.spec.params, ckpt);
  qin.plan = r.plan;
  if (const auto ragged = r.plan.ragged(); !ragged.empty())
    spdlog::info("{} Linears quantized per output channel: their width is not a multiple of the group size (first: {})",
                 ragged.size(), ragged.front());
  qin.progress = [&r](int64_t d, int64_t t, const std::string& what) {
    if (r.env.test.step_delay_ms > 0 && d > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(r.env.test.step_delay_ms));
    r.rep.progress(d, t, what);
  };
  qin.calibration = [&r] { return calibration_windows(r); };
  r.q.emplace(r.algorithm->run(qin));
  if (r.q->resumed_blocks > 0) r.rep.event({{"type", "resumed"}, {"blocks", r.q->resumed_blocks}});
  double mean_err = 0;
  for (const auto& e : r.q->layer_errors) mean_err += e.rel_fro_err;
  if (!r.q->layer_errors.empty()) r.rep.metric("weight_rel_err_mean", mean_err / r.q->layer_errors.size());
}

void package_stage(JobRun& r) {
  r.rep.begin_stage("package");
  // A format that reads the quantized tensors once lets each go as soon as
  // it is written. The calibration state (every finished block, mapped by
  // r.q) is unlinked at the first one: its space comes back block by block
  // as the output grows, so the job needs about the output plus a block on
  // disk, not both whole. A worker killed while packaging calibrates again.
  bool state_dropped = false;
  const auto written = [&r, &state_dropped](const std::string& name) {
    if (!state_dropped) {
      std::error_code ec;
      fs::remove_all(r.dir.root() / "calib_state", ec);
      state_dropped = true;
    }
    quant::release_written(*r.q, name);
  };
  const ExportInputs in{*r.ckpt, *r.q, r.plan, r.spec, r.dir, r.rep, written};
  r.written = r.format->write(in);
  r.scored = r.format->read_back(in, r.written);
  r.size_after = dir_size(r.dir.model_dir());
  // A folder that holds more than a runtime loads (ONNX: the float graph for
  // device compilers beside the QDQ graph) is sized by what it loads.
  if (const auto files = r.written.quantization_config.find("runtime_files");
      files != r.written.quantization_config.end() && files->is_array() && !files->empty()) {
    r.rep.metric("folder_size_mib", r.size_after / (1024.0 * 1024.0));
    r.size_after = 0;
    for (const auto& f : *files) r.size_after += fs::file_size(r.dir.model_dir() / f.get<std::string>());
  }
  r.rep.metric("packaged_size_mib", r.size_after / (1024.0 * 1024.0));
}

// The packed output read back by its format's reference loader
// (worker/verify.hpp); VERIFY: false turns it off.
void verify_stage(JobRun& r) {
  r.rep.begin_stage("verify", 1);
  if (r.written.verify.empty())
    throw Error(ErrorKind::internal, "the " + r.spec.export_format + " export recorded nothing to verify");
  corrupt_for_test(r.dir.model_dir(), r.env.test.corrupt_packed);
  const auto v = verify_packed(r.dir.model_dir(), r.written.verify, r.dir.root() / "verify", r.env);
  if (!v.ran) {
    r.rep.warn("verify skipped: " + v.skipped);
    r.rep.event({{"type", "verify"}, {"status", "skipped"}, {"reason", v.skipped}});
    return;
  }
  json e = v.record;
  e["type"] = "verify";
  e["status"] = v.failure.empty() ? "passed" : "failed";
  if (!v.failure.empty()) e["error"] = v.failure;
  r.rep.event(e);
  r.verified = v.record;
  r.verified["status"] = e["status"];
  if (!v.failure.empty()) throw StageFailure{ErrorType::verify, "verify: " + v.failure};
  spdlog::info("verify: {} reads the checkpoint as the job computed it (weights {:.2g}, logits {})",
               v.record["loader"].get<std::string>(), v.record.value("weight_max_rel_diff", 0.0),
               v.record.contains("logit_rel_diff") ? v.record["logit_rel_diff"].dump() : "not compared");
  r.rep.metric("verify_weight_max_rel_diff", v.record.value("weight_max_rel_diff", 0.0));
  if (v.record.contains("logit_rel_diff"))
    r.rep.metric("verify_logit_rel_diff", v.record["logit_rel_diff"].get<double>());
  r.rep.progress(1, 1);
}

void evaluate_stage(JobRun& r) {
  r.rep.begin_stage("evaluate");
  if (quantizes(r.spec)) {
    r.after = evaluate(r.spec, r.env, r.scored, "quantized", r.dir, r.rep, false, r.place);
  } else {
    // Any checkpoint the project reads: full precision or packed.
    r.before = evaluate(r.spec, r.env, r.model_dir, "model", r.dir, r.rep,
                        !r.ckpt->config().contains("quantization_config"), r.place);
  }
}

// The stages in order, each with when it runs. StatusReporter shows the
// ones that apply to a job as its stage list.
struct Stage {
  const char* name;
  bool (*applies)(const JobSpec& spec);
  void (*run)(JobRun& r);
};
const Stage kStages[] = {
    {"load", [](const JobSpec&) { return true; }, load_stage},
    {"baseline", [](const JobSpec& s) { return quantizes(s) && has_eval(s); }, baseline_stage},
    {"quantize", quantizes, quantize_stage},
    {"package", quantizes, package_stage},
    {"verify", [](const JobSpec& s) { return quantizes(s) && s.verify && export_format(s.export_format).verified; },
     verify_stage},
    {"evaluate", has_eval, evaluate_stage},
    // report: run by run_job, after the memory record is closed.
};

// The stage list of `spec`; of a quantizing job without evaluation when the
// spec could not be read.
std::vector<std::string> stage_names(const std::optional<JobSpec>& spec) {
  std::vector<std::string> names;
  for (const auto& s : kStages)
    if (spec ? s.applies(*spec) : s.run != baseline_stage && s.run != evaluate_stage && s.run != verify_stage)
      names.push_back(s.name);
  names.push_back("report");
  return names;
}

// The spec the worker runs, or the validation failure that stops it: the file
// could not be read, or it does not parse (every issue with its place).
const JobSpec& checked_spec(const SpecParseResult& parsed, const std::optional<std::string>& unreadable) {
  if (unreadable) throw StageFailure{ErrorType::validation, *unreadable};
  if (!parsed.spec) {
    std::string msg = "invalid spec:";
    for (const auto& i : parsed.issues)
      msg += " " + i.path + " (line " + std::to_string(i.line) + ", column " + std::to_string(i.column) +
             "): " + i.message + ";";
    throw StageFailure{ErrorType::validation, msg};
  }
  return *parsed.spec;
}

// The one place that picks the device and the compute dtype. GPUs handed to
// a worker that cannot use them (a CPU build, no driver, no device) stop the
// job with the reason, rather than compute on the CPU behind the user's back.
model::Placement place_job(const JobSpec& spec, const Environment& env) {
  try {
    return model::choose_placement(spec.dtype, env.cuda_visible_devices ? env.cuda_visible_devices->c_str() : nullptr);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::invalid_input)
      throw StageFailure{ErrorType::internal, std::string(e.what()) +
                                                  "; run the worker where CUDA works, or the server "
                                                  "with --slots instead of --gpus"};
    throw StageFailure{ErrorType::validation, e.what()};
  }
}

// A quantizing job's algorithm and export format, from this worker's tables.
void pick_algorithm(JobRun& run) {
  if (!quantizes(run.spec)) return;
  run.algorithm = quant::make_algorithm(run.spec.algorithm);
  if (!run.algorithm)
    throw StageFailure{ErrorType::validation,
                       "algorithm '" + run.spec.algorithm + "' has no implementation in this worker"};
  try {
    run.format = &export_format(run.spec.export_format);
  } catch (const Error& e) {
    throw StageFailure{ErrorType::validation, e.what()};
  }
}

// After the last stage: scratch files go, and the report is written.
void finish_job(JobRun& run, MemoryMeter& memory) {
  // Taken before the calibration state's files go: the most the job
  // directory held at any sample (the packaging stage releases the state as
  // it writes the safetensors formats, so the last sample is not the peak).
  const uint64_t disk_peak = run.rep.disk_peak_bytes();
  std::error_code ec;
  fs::remove_all(run.dir.root() / "calib_state", ec);  // only needed to resume this run
  for (const auto& p : run.written.scratch) fs::remove_all(p, ec);

  memory.begin("report");
  run.rep.begin_stage("report", 1);
  memory.close();
  const std::string note =
      run.format && run.format->report_note ? run.format->report_note(run.spec, run.written.quantization_config) : "";
  write_report(run.spec, run.model_dir, run.size_before, run.q ? std::optional<uint64_t>(run.size_after) : std::nullopt,
               run.q ? &*run.q : nullptr, run.written.quantization_config, note, run.dir, run.rep, run.before,
               run.after, memory.to_json(run.size_before, disk_peak),
               run.verified.empty() ? json(nullptr) : run.verified);
  run.rep.progress(1, 1);
  run.rep.succeed();
  if (run.q) spdlog::info("job done: {}", run.dir.model_dir().string());
}

// The exception in flight, ended as the job's failure (or cancellation):
// recorded in status.json and the log, and turned into the worker's exit code.
int fail_job(const std::string& stage, StatusReporter& rep) {
  try {
    throw;
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
  } catch (const std::system_error& e) {
    // std::filesystem and iostreams report errno through the error code.
    const bool full = e.code() == std::errc::no_space_on_device || e.code().value() == EDQUOT;
    const auto type = full ? ErrorType::no_space : classify(stage, ErrorKind::io);
    spdlog::error("{}: {}", stage, e.what());
    rep.fail(type, stage + ": " + e.what());
    return exit_code_for(type);
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

}  // namespace

int run_job(const fs::path& spec_path, const fs::path& job_dir, const Environment& env) {
  const JobDir dir(job_dir);
  dir.create_layout();
  setup_logging("worker", dir.worker_log());
  const int attempt = env.attempt;
  spdlog::info("qjobs-worker pid {} attempt {} spec {} job dir {}", ::getpid(), attempt, spec_path.string(),
               job_dir.string());

  // The spec is read and parsed once; its problems are reported once the
  // reporter exists (with the stage list of a quantizing job).
  std::optional<std::string> unreadable;
  std::string yaml;
  try {
    yaml = read_file(spec_path);
  } catch (const Error& e) {
    unreadable = e.what();
  }
  const auto parsed = parse_job_spec(yaml, SpecContext{.env = &env});
  StatusReporter rep(dir, stage_names(unreadable ? std::nullopt : parsed.spec), attempt, env.heartbeat_s);
  std::string stage = "validate";
  MemoryMeter memory;
  try {
    const JobSpec& spec = checked_spec(parsed, unreadable);
    if (attempt == 1)
      for (const auto& w : spec.warnings) rep.warn(w);
    JobRun run{.spec = spec, .env = env, .dir = dir, .rep = rep};
    run.place = place_job(spec, env);
    spdlog::info("computing on {}", run.place.describe());
    if (attempt == 1)
      rep.event({{"type", "placement"},
                 {"device", run.place.device.str()},
                 {"devices", run.place.devices.size()},
                 {"dtype", c10::toString(run.place.dtype)}});
    memory.place = &run.place;
    pick_algorithm(run);
    for (const auto& s : kStages) {
      if (!s.applies(spec)) continue;
      stage = s.name;
      memory.begin(stage);
      s.run(run);
    }
    stage = "report";
    finish_job(run, memory);
    return worker_exit::ok;
  } catch (...) {
    return fail_job(stage, rep);
  }
}

int write_calibration(const fs::path& spec_path, const fs::path& out, const Environment& env) {
  try {
    const auto parsed = parse_job_spec(read_file(spec_path), SpecContext{.env = &env});
    const JobSpec& spec = checked_spec(parsed, std::nullopt);
    const auto w = calibration_windows(spec, env, model::resolve_model_dir(spec.model, env, {}));
    model::save_safetensors(out, {{"input_ids", w.ids}}, {{"format", "pt"}, {"source", w.source}});
    std::cout << json{{"samples", w.ids.size(0)}, {"seqlen", w.ids.size(1)}, {"source", w.source}}.dump() << "\n";
    return worker_exit::ok;
  } catch (const StageFailure& f) {
    std::cerr << "qjobs-worker calibration: " << f.message << "\n";
    return exit_code_for(f.type);
  } catch (const std::exception& e) {
    std::cerr << "qjobs-worker calibration: " << e.what() << "\n";
    return worker_exit::data;
  }
}

}  // namespace qjobs::worker
