// qjobs-worker: runs one job attempt, or works with a model outside a job.
//   qjobs-worker run SPEC.yaml --job-dir DIR
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>

#include <ATen/Context.h>
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/environment.hpp"
#include "common/error.hpp"
#include "jobs/model/random_model.hpp"
#include "worker/commands.hpp"
#include "worker/pipeline.hpp"
#include "worker/status_reporter.hpp"

namespace {

using qjobs::Environment;
namespace worker = qjobs::worker;

void on_stop_signal(int) { worker::g_stop_requested.store(true); }

// A subcommand and what it runs once the command line is parsed. Each add_*
// below keeps its option values in a record the runner shares.
struct Command {
  CLI::App* app;
  std::function<int(const Environment&)> run;
};

const std::vector<std::string> kDtypes = {"auto", "float32", "bfloat16", "float16"};

void add_attention(CLI::App* c, worker::ModelArgs& m) {
  c->add_option("--attention", m.attention, "fused (scaled_dot_product_attention) or eager")
      ->check(CLI::IsMember({"fused", "eager"}))
      ->capture_default_str();
}

Command add_run(CLI::App& app) {
  struct Args {
    std::string spec, job_dir;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("run", "run one job attempt from a YAML spec");
  c->add_option("spec", a->spec, "the job's YAML spec")->required()->check(CLI::ExistingFile);
  c->add_option("--job-dir", a->job_dir, "the job directory to write into")->required();
  return {c, [a](const Environment& env) { return worker::run_job(a->spec, a->job_dir, env); }};
}

Command add_calibration(CLI::App& app) {
  struct Args {
    std::string spec, out;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("calibration", "write the calibration token windows a job would use");
  c->add_option("spec", a->spec, "the job's YAML spec")->required()->check(CLI::ExistingFile);
  c->add_option("--out", a->out, "output .safetensors (int64 'input_ids' [samples, seqlen])")->required();
  return {c, [a](const Environment& env) { return worker::write_calibration(a->spec, a->out, env); }};
}

Command add_init_model(CLI::App& app) {
  struct Args {
    qjobs::model::RandomModelOptions rm;
    std::string out;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("init-model", "write a random Llama checkpoint in the Hugging Face layout");
  c->add_option("--out", a->out, "destination folder")->required();
  c->add_option("--hidden", a->rm.hidden)->capture_default_str();
  c->add_option("--intermediate", a->rm.intermediate)->capture_default_str();
  c->add_option("--layers", a->rm.layers)->capture_default_str();
  c->add_option("--heads", a->rm.heads)->capture_default_str();
  c->add_option("--kv-heads", a->rm.kv_heads)->capture_default_str();
  c->add_option("--vocab", a->rm.vocab)->capture_default_str();
  c->add_option("--dtype", a->rm.dtype)
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  c->add_option("--seed", a->rm.seed)->capture_default_str();
  c->add_option("--shards", a->rm.shards)->capture_default_str();
  c->add_option("--init-std", a->rm.init_std)->capture_default_str();
  c->add_flag("--tie-embeddings", a->rm.tie_embeddings);
  return {c, [a](const Environment&) {
            try {
              qjobs::model::write_random_llama(a->out, a->rm);
              std::cout << a->out << "\n";
              return 0;
            } catch (const std::exception& e) {
              std::cerr << "error: " << e.what() << "\n";
              return 1;
            }
          }};
}

Command add_tokenize(CLI::App& app) {
  struct Args {
    std::string dir, text;
    bool bos = false;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("tokenize", "print the token ids of a text");
  c->add_option("--tokenizer", a->dir, "folder with tokenizer.json")->required();
  c->add_option("--text", a->text, "the text")->required();
  c->add_flag("--bos", a->bos, "start with the BOS token");
  return {c, [a](const Environment& env) { return worker::cmd_tokenize(env, a->dir, a->text, a->bos); }};
}

Command add_logits(CLI::App& app) {
  struct Args {
    worker::ModelArgs m;
    std::string tokens, out;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("logits", "write the logits of token id lists to a safetensors file");
  c->add_option("--checkpoint", a->m.checkpoint)->required();
  c->add_option("--tokens", a->tokens, "JSON file: a list of equal-length id lists")->required();
  c->add_option("--out", a->out, "output .safetensors (tensor 'logits', float32 [B, T, V])")->required();
  c->add_option("--dtype", a->m.dtype)->check(CLI::IsMember(kDtypes))->capture_default_str();
  add_attention(c, a->m);
  return {c, [a](const Environment& env) {
            a->m.env = env;
            return worker::cmd_logits(a->m, a->tokens, a->out);
          }};
}

Command add_ppl(CLI::App& app) {
  struct Args {
    worker::ModelArgs m;
    std::string data;
    int64_t seqlen = 2048, num_samples = -1, batch_size = 1;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("ppl", "perplexity of a text file (GPTQ/AWQ protocol)");
  c->add_option("--checkpoint", a->m.checkpoint)->required();
  c->add_option("--data", a->data, ".txt/.jsonl/.json text, or .safetensors with input_ids")->required();
  c->add_option("--seqlen", a->seqlen)->capture_default_str();
  c->add_option("--num-samples", a->num_samples, "first N windows (-1: all)")->capture_default_str();
  c->add_option("--batch-size", a->batch_size)->capture_default_str();
  c->add_option("--dtype", a->m.dtype)->check(CLI::IsMember(kDtypes))->capture_default_str();
  add_attention(c, a->m);
  return {c, [a](const Environment& env) {
            a->m.env = env;
            return worker::cmd_ppl(a->m, a->data, a->seqlen, a->num_samples, a->batch_size);
          }};
}

Command add_gguf(CLI::App& app) {
  struct Args {
    std::string checkpoint, type = "q8_0", out, readback, name;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("gguf", "write a checkpoint as a GGUF file for llama.cpp");
  c->add_option("--checkpoint", a->checkpoint)->required();
  c->add_option("--type", a->type, "decoder Linears: q8_0, q4_0, f16 or f32")->capture_default_str();
  c->add_option("--out", a->out, "the .gguf file to write")->required();
  c->add_option("--name", a->name, "general.name (default: the checkpoint folder's name)");
  c->add_option("--readback", a->readback, "also write the file's weights, read back, as a float checkpoint here");
  return {c, [a](const Environment& env) {
            return worker::cmd_gguf(env, a->checkpoint, a->type, a->out, a->readback, a->name);
          }};
}

Command add_onnx(CLI::App& app) {
  struct Args {
    std::string checkpoint, out;
    int64_t seq = 128, ctx = 1024;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand(
      "onnx", "write a checkpoint's float graph as ONNX (prefill of --seq-len tokens with a KV cache)");
  c->add_option("--checkpoint", a->checkpoint)->required();
  c->add_option("--out", a->out, "the .onnx file to write (weights beside it in .data)")->required();
  c->add_option("--seq-len", a->seq, "new tokens per call (AR)")->capture_default_str();
  c->add_option("--context-len", a->ctx, "past + new positions (CL)")->capture_default_str();
  return {c, [a](const Environment& env) { return worker::cmd_onnx(env, a->checkpoint, a->out, a->seq, a->ctx); }};
}

Command add_demo(CLI::App& app) {
  struct Args {
    worker::ModelArgs m;
    std::string prompt;
    bool raw = false;
    int64_t max_new = 64;
    double temperature = 0, top_p = 1.0;
    uint64_t seed = 0;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("demo", "answer a prompt");
  c->add_option("--checkpoint", a->m.checkpoint)->required();
  c->add_option("--prompt", a->prompt)->required();
  c->add_flag("--raw", a->raw, "no chat template");
  c->add_option("--max-new-tokens", a->max_new)->capture_default_str();
  c->add_option("--temperature", a->temperature, "0: greedy")->capture_default_str();
  c->add_option("--top-p", a->top_p)->capture_default_str();
  c->add_option("--seed", a->seed)->capture_default_str();
  c->add_option("--dtype", a->m.dtype)->check(CLI::IsMember(kDtypes))->capture_default_str();
  return {c, [a](const Environment& env) {
            a->m.env = env;
            return worker::cmd_demo(a->m, a->prompt, a->raw, a->max_new, a->temperature, a->top_p, a->seed);
          }};
}

Command add_train_tokenizer(CLI::App& app) {
  struct Args {
    std::string data, out;
    int64_t vocab = 1024;
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("train-tokenizer", "train a byte-level BPE tokenizer on a data file");
  c->add_option("--data", a->data, ".jsonl/.json/.txt rows")->required();
  c->add_option("--vocab-size", a->vocab)->capture_default_str();
  c->add_option("--out", a->out)->required();
  return {c, [a](const Environment&) { return worker::cmd_train_tokenizer(a->data, a->vocab, a->out); }};
}

Command add_train(CLI::App& app) {
  auto ta = std::make_shared<worker::TrainArgs>();
  auto* c = app.add_subcommand("train", "train a small Llama model from scratch (libtorch autograd)");
  c->add_option("--data", ta->data, "training rows")->required();
  c->add_option("--eval-data", ta->eval_data, "held-out rows");
  c->add_option("--tokenizer", ta->tokenizer, "folder with tokenizer.json")->required();
  c->add_option("--out", ta->out, "checkpoint folder")->required();
  c->add_option("--hidden", ta->hidden)->capture_default_str();
  c->add_option("--intermediate", ta->intermediate)->capture_default_str();
  c->add_option("--layers", ta->layers)->capture_default_str();
  c->add_option("--heads", ta->heads)->capture_default_str();
  c->add_option("--kv-heads", ta->kv_heads)->capture_default_str();
  c->add_option("--steps", ta->steps)->capture_default_str();
  c->add_option("--batch-size", ta->batch_size)->capture_default_str();
  c->add_option("--seqlen", ta->seqlen)->capture_default_str();
  c->add_option("--lr", ta->lr)->capture_default_str();
  c->add_option("--seed", ta->seed)->capture_default_str();
  return {c, [ta](const Environment&) { return worker::cmd_train(*ta); }};
}

Command add_gemm(CLI::App& app) {
  struct Args {
    int64_t m = 4096, n = 4096, k = 4096;
    int reps = 10;
    std::string dtype = "auto";
  };
  auto a = std::make_shared<Args>();
  auto* c = app.add_subcommand("gemm", "measure the GEMM rate of the device a job would get");
  c->add_option("--m", a->m)->capture_default_str();
  c->add_option("--n", a->n)->capture_default_str();
  c->add_option("--k", a->k)->capture_default_str();
  c->add_option("--reps", a->reps)->capture_default_str();
  c->add_option("--dtype", a->dtype)->check(CLI::IsMember(kDtypes))->capture_default_str();
  return {c, [a](const Environment& env) { return worker::cmd_gemm(env, a->m, a->n, a->k, a->dtype, a->reps); }};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qjobs-worker: quantize and evaluate language models"};
  app.require_subcommand(1);
  // The build and what it can compute on: the libtorch, its CUDA, and
  // whether a GPU is usable here (and why not).
  app.set_version_flag("--version", [] { return worker::version_text(); });
  const std::vector<Command> commands = {
      add_run(app),   add_calibration(app), add_init_model(app), add_tokenize(app), add_logits(app),
      add_ppl(app),   add_gguf(app),        add_onnx(app),       add_demo(app),     add_train_tokenizer(app),
      add_train(app), add_gemm(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  // float32 means float32 on a GPU too (reference checks): no TF32 matmuls.
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  // The environment, read once: everything below gets it as a value.
  const auto env = Environment::from_process();
  int rc = 2;
  for (const auto& c : commands)
    if (*c.app) rc = c.run(env);
  // Leave without running static destructors: libtorch's CUDA libraries
  // page in about 120 MB at teardown (a CUDA build on any machine), which
  // would make the process's peak RSS (what Slurm and ru_maxrss see) larger
  // than any moment of the job. Output is flushed first; every file the
  // worker writes is closed (and renamed into place) before this point.
  std::cout.flush();
  std::cerr.flush();
  spdlog::shutdown();
  std::_Exit(rc);
}
