#include "worker/commands.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>

#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/job_dir.hpp"
#include "common/strings.hpp"
#include "jobs/data/dataset.hpp"
#include "jobs/eval/perplexity.hpp"
#include "jobs/eval/tasks.hpp"
#include "jobs/export/gguf_llama.hpp"
#include "jobs/export/onnx_llama.hpp"
#include "jobs/export/packed.hpp"
#include "jobs/model/checkpoint.hpp"
#include "jobs/model/device.hpp"
#include "jobs/model/generate.hpp"
#include "jobs/model/llama_model.hpp"
#include "jobs/model/model_source.hpp"
#include "jobs/model/quantized_checkpoint.hpp"
#include "jobs/model/random_model.hpp"
#include "jobs/model/safetensors.hpp"
#include "jobs/model/trainer.hpp"
#include "jobs/tokenizer/bpe_trainer.hpp"
#include "jobs/tokenizer/tokenizer.hpp"

namespace qjobs::worker {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int fail(const std::exception& e) {
  std::cerr << json{{"error", e.what()}}.dump() << "\n";
  return 1;
}

struct Loaded {
  fs::path dir;
  model::LlamaModel model;
};

// Where a command computes, as a job would, said on stderr.
model::Placement place_command(const char* command, const std::string& dtype, const Environment& env) {
  const auto place =
      model::choose_placement(dtype, env.cuda_visible_devices ? env.cuda_visible_devices->c_str() : nullptr);
  std::cerr << "qjobs-worker " << command << ": computing on " << place.describe() << "\n";
  return place;
}

Loaded load(const char* command, const ModelArgs& a) {
  const fs::path dir = model::resolve_model_dir(a.checkpoint, a.env);
  // Where a job would run: a GPU when one is visible (an error if CUDA cannot use it).
  const auto place = place_command(command, a.dtype, a.env);
  model::LoadOptions o;
  o.dtype = place.dtype;
  o.device = place.device;
  o.devices = place.devices;
  o.fused_attention = a.attention != "eager";
  return {dir, model::LlamaModel::load(model::Checkpoint::open(dir), o)};
}

}  // namespace

std::string version_text() {
  const auto info = json::parse(model::runtime_info_json());
  std::string s = std::string("qjobs-worker ") + QJOBS_VERSION + "\nlibtorch " + info["torch"].get<std::string>();
  s += info["cuda_built"].get<bool>() ? ", CUDA " + info["cuda_runtime"].get<std::string>() : ", CPU only";
  if (info["cuda_usable"].get<bool>()) {
    s += "\nCUDA usable: " + std::to_string(info["gpus"].size()) + " device(s)";
    for (const auto& g : info["gpus"])
      s += "; " + g["name"].get<std::string>() + " (sm " + g["capability"].get<std::string>() + ")";
  } else {
    s += "\nCUDA not usable: " + info["cuda_reason"].get<std::string>();
  }
  return s + "\n" + info.dump();
}

int cmd_tokenize(const Environment& env, const std::string& tokenizer_dir, const std::string& text, bool bos) {
  try {
    const auto tok = tokenizer::Tokenizer::load(model::resolve_model_dir(tokenizer_dir, env));
    std::vector<int64_t> ids;
    if (bos) {
      if (!tok.bos_id()) throw Error(ErrorKind::invalid_input, "--bos: the tokenizer has no bos_token");
      ids.push_back(*tok.bos_id());
    }
    const auto body = tok.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    std::cout << json(ids).dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_logits(const ModelArgs& a, const std::string& tokens_json, const std::string& out) {
  try {
    const auto j = json::parse(read_file(tokens_json), nullptr, false);
    if (j.is_discarded() || !j.is_array() || j.empty() || !j[0].is_array())
      throw Error(ErrorKind::invalid_input, tokens_json + ": expected a list of equal-length lists of token ids");
    const auto rows = j.get<std::vector<std::vector<int64_t>>>();
    for (const auto& r : rows)
      if (r.size() != rows[0].size() || r.empty())
        throw Error(ErrorKind::invalid_input, tokens_json + ": every id list must have the same, non-zero length");
    std::vector<int64_t> flat;
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    const auto ids =
        at::tensor(flat, at::kLong).view({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
    const auto l = load("logits", a);
    if (ids.max().item<int64_t>() >= l.model.config().vocab || ids.min().item<int64_t>() < 0)
      throw Error(ErrorKind::invalid_input,
                  "token id out of range [0, " + std::to_string(l.model.config().vocab) + ")");
    at::NoGradGuard no_grad;
    const auto logits = l.model.forward(ids).to(at::kCPU).to(at::kFloat);
    model::save_safetensors(out, {{"logits", logits, {}}});
    std::cout << json{{"out", out}, {"shape", logits.sizes().vec()}}.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_ppl(const ModelArgs& a, const std::string& data, int64_t seqlen, int64_t num_samples, int64_t batch_size) {
  try {
    const auto l = load("ppl", a);
    at::Tensor ids;
    if (fs::path(data).extension() == ".safetensors") {
      ids = model::SafetensorsFile::open(data).tensor("input_ids").flatten().to(at::kLong);
    } else {
      data::DatasetSpec ds;
      ds.path = data;
      ds.split = "test";
      ids = eval::perplexity_ids(tokenizer::Tokenizer::load(l.dir), data::evaluation_text(data::load_rows(ds)));
    }
    eval::PerplexityOptions o;
    o.seqlen = seqlen;
    o.num_samples = num_samples;
    o.batch_size = batch_size;
    const auto r = eval::perplexity(l.model, ids, o);
    std::cout << json{{"ppl", r.ppl},
                      {"tokens", r.tokens},
                      {"windows", r.windows},
                      {"seconds", r.seconds},
                      {"tokens_per_s", r.tokens_per_s},
                      {"seqlen", seqlen}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_demo(const ModelArgs& a, const std::string& prompt, bool raw, int64_t max_new_tokens, double temperature,
             double top_p, uint64_t seed) {
  try {
    const auto l = load("demo", a);
    const auto tok = tokenizer::Tokenizer::load(l.dir);
    std::string response;
    if (temperature <= 0) {
      response = eval::answer(l.model, tok, prompt, raw, max_new_tokens);
    } else {
      const auto ids = eval::prompt_ids(tok, prompt, raw);
      model::GenerateOptions o;
      o.max_new_tokens = max_new_tokens;
      o.temperature = temperature;
      o.top_p = top_p;
      o.seed = seed;
      o.stop_tokens = tok.eos_ids();
      response = tok.decode(model::generate(l.model, ids, o), true);
    }
    std::cout << json{{"prompt", prompt}, {"response", response}}.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

// The float32 weights of `ckpt` by name, packed Linears unpacked: what the
// GGUF and ONNX converters write.
static std::function<at::Tensor(const std::string&)> float_weights(const model::Checkpoint& ckpt) {
  return [&ckpt, qc = ckpt.config().value("quantization_config", json::object())](const std::string& name) {
    const std::string stem = weight_stem(name);
    if (!stem.empty() && model::is_quantized_linear(ckpt, stem, qc)) return model::unpack_weight(ckpt, stem, qc);
    return ckpt.tensor(name).to(at::kFloat);
  };
}

int cmd_onnx(const Environment& env, const std::string& checkpoint, const std::string& out, int64_t seq_len,
             int64_t context_len) {
  try {
    const fs::path dir = model::resolve_model_dir(checkpoint, env);
    const auto ckpt = model::Checkpoint::open(dir);
    const auto weight = float_weights(ckpt);
    exporter::onnx::write_llama_onnx(ckpt.config(), weight, {seq_len, context_len}, nullptr, out);
    std::cout << json{{"out", out},
                      {"graph", exporter::onnx::GraphShape{seq_len, context_len}.name()},
                      {"opset", exporter::onnx::kOpset}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_gguf(const Environment& env, const std::string& checkpoint, const std::string& type, const std::string& out,
             const std::string& readback, const std::string& name) {
  try {
    using exporter::gguf::TensorType;
    const std::map<std::string, TensorType> types = {
        {"q8_0", TensorType::q8_0}, {"q4_0", TensorType::q4_0}, {"f16", TensorType::f16}, {"f32", TensorType::f32}};
    const auto t = types.find(type);
    if (t == types.end()) throw Error(ErrorKind::invalid_input, "--type must be q8_0, q4_0, f16 or f32");
    const fs::path dir = model::resolve_model_dir(checkpoint, env);
    const auto ckpt = model::Checkpoint::open(dir);
    const auto weight = float_weights(ckpt);
    exporter::write_llama_gguf(ckpt.config(), dir, weight, t->second, name.empty() ? dir.filename().string() : name,
                               out);
    if (!readback.empty()) {
      // The file's weights as a float checkpoint, for qjobs' own evaluation of it.
      fs::create_directories(readback);
      std::vector<model::NamedTensor> tensors;
      for (auto& [n, w] : exporter::read_llama_gguf(out)) tensors.push_back({n, w, std::nullopt});
      model::save_safetensors(fs::path(readback) / "model.safetensors", tensors);
      json config = ckpt.config();
      config.erase("quantization_config");
      config.erase("qjobs_quantization");
      write_file_atomic(fs::path(readback) / "config.json", config.dump(2));
      for (const auto& f : ckpt.companion_files())
        fs::copy_file(f, fs::path(readback) / f.filename(), fs::copy_options::overwrite_existing);
    }
    std::error_code ec;
    std::cout << json{{"out", out}, {"type", type}, {"bytes", fs::file_size(out, ec)}}.dump() << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_train_tokenizer(const std::string& data, int64_t vocab_size, const std::string& out) {
  try {
    data::DatasetSpec ds;
    ds.path = data;
    tokenizer::BpeTrainOptions o;
    o.vocab_size = vocab_size;
    const auto t = tokenizer::train_bpe(data::load_rows(ds), o);
    tokenizer::save_tokenizer(out, t, o);
    std::cout << json{{"out", out}, {"vocab_size", t["model"]["vocab"].size()}, {"merges", t["model"]["merges"].size()}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

int cmd_train(const TrainArgs& a) {
  try {
    const auto tok = tokenizer::Tokenizer::load(a.tokenizer);
    const auto ids_of = [&](const std::string& path) {
      data::DatasetSpec ds;
      ds.path = path;
      return eval::perplexity_ids(tok, data::evaluation_text(data::load_rows(ds)));
    };
    const auto train_ids = ids_of(a.data);

    model::RandomModelOptions ro;
    ro.hidden = a.hidden;
    ro.intermediate = a.intermediate;
    ro.layers = a.layers;
    ro.heads = a.heads;
    ro.kv_heads = a.kv_heads;
    ro.vocab = tok.vocab_size();
    ro.tie_embeddings = true;
    ro.seed = a.seed;
    model::write_random_llama(a.out, ro);
    // Point the config at this tokenizer's special tokens.
    auto config = json::parse(read_file(fs::path(a.out) / "config.json"));
    config["bos_token_id"] = tok.bos_id().value_or(0);
    config["eos_token_id"] = tok.eos_ids().empty() ? 0 : tok.eos_ids()[0];
    config["max_position_embeddings"] = 2048;
    write_file_atomic(fs::path(a.out) / "config.json", config.dump(2));

    auto m = model::LlamaModel::load(model::Checkpoint::open(a.out));
    model::TrainOptions o;
    o.steps = a.steps;
    o.batch_size = a.batch_size;
    o.seqlen = a.seqlen;
    o.lr = a.lr;
    o.seed = a.seed;
    const auto t0 = std::chrono::steady_clock::now();
    double last = 0;
    model::train(m, train_ids, o, [&](int64_t step, double loss) {
      last = loss;
      if (step % 25 == 0 || step == 1) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::cerr << "step " << step << "/" << o.steps << " loss " << loss << " (" << s << " s)\n";
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::vector<model::NamedTensor> tensors;
    for (auto& [name, t] : m.parameters()) tensors.push_back({name, t->contiguous(), {}});
    model::save_safetensors(fs::path(a.out) / "model.safetensors", tensors);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(fs::path(a.tokenizer) / f, fs::path(a.out) / f, fs::copy_options::overwrite_existing);

    json summary = {{"steps", o.steps},
                    {"tokens_per_step", o.batch_size * o.seqlen},
                    {"final_loss", last},
                    {"train_tokens", train_ids.numel()},
                    {"seconds", seconds}};
    if (!a.eval_data.empty()) {
      const auto held = ids_of(a.eval_data);
      const auto reloaded = model::LlamaModel::load(model::Checkpoint::open(a.out));
      eval::PerplexityOptions po;
      po.seqlen = a.seqlen;
      po.batch_size = 8;
      summary["heldout_ppl"] = eval::perplexity(reloaded, held, po).ppl;
      // The unigram model: token frequencies of the training stream with
      // add-one smoothing, scored on the same held-out predictions.
      const auto counts = at::bincount(train_ids, {}, tok.vocab_size()).to(at::kDouble) + 1.0;
      const auto logp = (counts / counts.sum()).log();
      const int64_t n = held.numel() / po.seqlen;
      const auto windows = held.narrow(0, 0, n * po.seqlen).view({n, po.seqlen}).narrow(1, 1, po.seqlen - 1);
      summary["heldout_unigram_ppl"] = std::exp(-logp.index_select(0, windows.flatten()).mean().item<double>());
      summary["heldout_tokens"] = held.numel();
      summary["heldout_seqlen"] = po.seqlen;
    }
    std::cout << summary.dump(2) << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

namespace {

// The fastest of `reps` timed calls of `run` after one untimed one; `run`
// returns a tensor whose sum waits for the device.
double best_seconds(int reps, const std::function<at::Tensor()>& run) {
  run().sum().item<double>();
  double best = 1e300;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run().sum().item<double>();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int cmd_gemm(const Environment& env, int64_t m, int64_t n, int64_t k, const std::string& dtype, int reps) {
  try {
    const auto place = place_command("gemm", dtype, env);
    at::NoGradGuard g;
    const auto opts = at::TensorOptions().dtype(place.dtype).device(place.device);
    const auto a = at::randn({m, k}, opts), b = at::randn({k, n}, opts);
    auto c = at::matmul(a, b);  // warm-up
    c.sum().item<double>();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) c = at::matmul(a, b);
    c.sum().item<double>();  // waits for the device
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double best = best_seconds(reps, [&] { return at::matmul(a, b); });
    // Elementwise passes (one read and one write of a float32 element) over
    // a weight-sized tensor: what rounding and scaling weights run at.
    auto x = at::randn({int64_t{16} << 20}, opts.dtype(at::kFloat));
    const double se = best_seconds(reps, [&] { return x.mul_(1.0000001); });
    // A Cholesky factor of a k x k positive definite matrix (k^3 / 3 FLOPs),
    // in float32: what GPTQ's factorizations run at.
    const auto f = at::randn({k, k}, opts.dtype(at::kFloat));
    const auto spd = at::matmul(f, f.t()) + at::eye(k, opts.dtype(at::kFloat)) * static_cast<double>(k);
    const double sf = best_seconds(reps, [&] { return at::linalg_cholesky(spd); });
    const double kd = static_cast<double>(k);
    std::cout << json{{"device", place.device.str()},
                      {"elementwise_per_s", static_cast<double>(x.numel()) / se},
                      {"factor_gflops", kd * kd * kd / 3 / sf / 1e9},
                      {"dtype", c10::toString(place.dtype)},
                      {"m", m},
                      {"n", n},
                      {"k", k},
                      {"reps", reps},
                      {"seconds", s},
                      {"gflops", 2.0 * m * n * k * reps / s / 1e9},
                      {"gflops_best", 2.0 * m * n * k / best / 1e9}}
                     .dump()
              << "\n";
    return 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

}  // namespace qjobs::worker
