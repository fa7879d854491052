// qjobs-worker: runs one job attempt, or works with a model outside a job.
//   qjobs-worker run SPEC.yaml --job-dir DIR
#include <csignal>
#include <cstdlib>
#include <iostream>

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
void on_stop_signal(int) { qjobs::worker::g_stop_requested.store(true); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qjobs-worker: quantize and evaluate language models"};
  app.require_subcommand(1);
  // The build and what it can compute on: the libtorch, its CUDA, and
  // whether a GPU is usable here (and why not).
  app.set_version_flag("--version", [] { return qjobs::worker::version_text(); });

  std::string spec, job_dir;
  auto* run = app.add_subcommand("run", "run one job attempt from a YAML spec");
  run->add_option("spec", spec, "the job's YAML spec")->required()->check(CLI::ExistingFile);
  run->add_option("--job-dir", job_dir, "the job directory to write into")->required();

  qjobs::model::RandomModelOptions rm;
  std::string rm_out;
  auto* init = app.add_subcommand("init-model", "write a random Llama checkpoint in the Hugging Face layout");
  init->add_option("--out", rm_out, "destination folder")->required();
  init->add_option("--hidden", rm.hidden)->capture_default_str();
  init->add_option("--intermediate", rm.intermediate)->capture_default_str();
  init->add_option("--layers", rm.layers)->capture_default_str();
  init->add_option("--heads", rm.heads)->capture_default_str();
  init->add_option("--kv-heads", rm.kv_heads)->capture_default_str();
  init->add_option("--vocab", rm.vocab)->capture_default_str();
  init->add_option("--dtype", rm.dtype)
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  init->add_option("--seed", rm.seed)->capture_default_str();
  init->add_option("--shards", rm.shards)->capture_default_str();
  init->add_option("--init-std", rm.init_std)->capture_default_str();
  init->add_flag("--tie-embeddings", rm.tie_embeddings);

  qjobs::worker::ModelArgs margs;
  std::string tok_dir, text, tokens_file, out_file, data_file, prompt;
  bool bos = false, raw = false;
  int64_t seqlen = 2048, num_samples = -1, batch_size = 1, max_new = 64;
  double temperature = 0, top_p = 1.0;
  uint64_t seed = 0;
  const std::vector<std::string> dtypes = {"auto", "float32", "bfloat16", "float16"};
  auto* tokenize = app.add_subcommand("tokenize", "print the token ids of a text");
  tokenize->add_option("--tokenizer", tok_dir, "folder with tokenizer.json")->required();
  tokenize->add_option("--text", text, "the text")->required();
  tokenize->add_flag("--bos", bos, "start with the BOS token");
  auto* logits = app.add_subcommand("logits", "write the logits of token id lists to a safetensors file");
  logits->add_option("--checkpoint", margs.checkpoint)->required();
  logits->add_option("--tokens", tokens_file, "JSON file: a list of equal-length id lists")->required();
  logits->add_option("--out", out_file, "output .safetensors (tensor 'logits', float32 [B, T, V])")->required();
  logits->add_option("--dtype", margs.dtype)->check(CLI::IsMember(dtypes))->capture_default_str();
  logits->add_option("--attention", margs.attention, "fused (scaled_dot_product_attention) or eager")
      ->check(CLI::IsMember({"fused", "eager"}))
      ->capture_default_str();
  auto* ppl = app.add_subcommand("ppl", "perplexity of a text file (GPTQ/AWQ protocol)");
  ppl->add_option("--checkpoint", margs.checkpoint)->required();
  ppl->add_option("--data", data_file, ".txt/.jsonl/.json text, or .safetensors with input_ids")->required();
  ppl->add_option("--seqlen", seqlen)->capture_default_str();
  ppl->add_option("--num-samples", num_samples, "first N windows (-1: all)")->capture_default_str();
  ppl->add_option("--batch-size", batch_size)->capture_default_str();
  ppl->add_option("--dtype", margs.dtype)->check(CLI::IsMember(dtypes))->capture_default_str();
  ppl->add_option("--attention", margs.attention, "fused (scaled_dot_product_attention) or eager")
      ->check(CLI::IsMember({"fused", "eager"}))
      ->capture_default_str();
  std::string gguf_type = "q8_0";
  auto* gguf = app.add_subcommand("gguf", "write a checkpoint as a GGUF file for llama.cpp");
  gguf->add_option("--checkpoint", margs.checkpoint)->required();
  gguf->add_option("--type", gguf_type, "decoder Linears: q8_0, q4_0, f16 or f32")->capture_default_str();
  gguf->add_option("--out", out_file, "the .gguf file to write")->required();
  std::string gguf_readback, gguf_name;
  gguf->add_option("--name", gguf_name, "general.name (default: the checkpoint folder's name)");
  gguf->add_option("--readback", gguf_readback, "also write the file's weights, read back, as a float checkpoint here");
  int64_t onnx_seq = 128, onnx_ctx = 1024;
  auto* onnx = app.add_subcommand(
      "onnx", "write a checkpoint's float graph as ONNX (prefill of --seq-len tokens with a KV cache)");
  onnx->add_option("--checkpoint", margs.checkpoint)->required();
  onnx->add_option("--out", out_file, "the .onnx file to write (weights beside it in .data)")->required();
  onnx->add_option("--seq-len", onnx_seq, "new tokens per call (AR)")->capture_default_str();
  onnx->add_option("--context-len", onnx_ctx, "past + new positions (CL)")->capture_default_str();
  auto* demo = app.add_subcommand("demo", "answer a prompt");
  demo->add_option("--checkpoint", margs.checkpoint)->required();
  demo->add_option("--prompt", prompt)->required();
  demo->add_flag("--raw", raw, "no chat template");
  demo->add_option("--max-new-tokens", max_new)->capture_default_str();
  demo->add_option("--temperature", temperature, "0: greedy")->capture_default_str();
  demo->add_option("--top-p", top_p)->capture_default_str();
  demo->add_option("--seed", seed)->capture_default_str();
  demo->add_option("--dtype", margs.dtype)->check(CLI::IsMember(dtypes))->capture_default_str();

  std::string tt_data, tt_out;
  int64_t tt_vocab = 1024;
  auto* train_tok = app.add_subcommand("train-tokenizer", "train a byte-level BPE tokenizer on a data file");
  train_tok->add_option("--data", tt_data, ".jsonl/.json/.txt rows")->required();
  train_tok->add_option("--vocab-size", tt_vocab)->capture_default_str();
  train_tok->add_option("--out", tt_out)->required();
  qjobs::worker::TrainArgs ta;
  auto* train = app.add_subcommand("train", "train a small Llama model from scratch (libtorch autograd)");
  train->add_option("--data", ta.data, "training rows")->required();
  train->add_option("--eval-data", ta.eval_data, "held-out rows");
  train->add_option("--tokenizer", ta.tokenizer, "folder with tokenizer.json")->required();
  train->add_option("--out", ta.out, "checkpoint folder")->required();
  train->add_option("--hidden", ta.hidden)->capture_default_str();
  train->add_option("--intermediate", ta.intermediate)->capture_default_str();
  train->add_option("--layers", ta.layers)->capture_default_str();
  train->add_option("--heads", ta.heads)->capture_default_str();
  train->add_option("--kv-heads", ta.kv_heads)->capture_default_str();
  train->add_option("--steps", ta.steps)->capture_default_str();
  train->add_option("--batch-size", ta.batch_size)->capture_default_str();
  train->add_option("--seqlen", ta.seqlen)->capture_default_str();
  train->add_option("--lr", ta.lr)->capture_default_str();
  train->add_option("--seed", ta.seed)->capture_default_str();

  int64_t gm = 4096, gn = 4096, gk = 4096;
  int greps = 10;
  std::string gdtype = "auto";
  auto* gemm = app.add_subcommand("gemm", "measure the GEMM rate of the device a job would get");
  gemm->add_option("--m", gm)->capture_default_str();
  gemm->add_option("--n", gn)->capture_default_str();
  gemm->add_option("--k", gk)->capture_default_str();
  gemm->add_option("--reps", greps)->capture_default_str();
  gemm->add_option("--dtype", gdtype)->check(CLI::IsMember(dtypes))->capture_default_str();

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
  const auto env = qjobs::Environment::from_process();
  margs.env = env;
  const auto dispatch = [&]() -> int {
    if (*run) return qjobs::worker::run_job(spec, job_dir, env);
    if (*gemm) return qjobs::worker::cmd_gemm(env, gm, gn, gk, gdtype, greps);
    if (*tokenize) return qjobs::worker::cmd_tokenize(env, tok_dir, text, bos);
    if (*logits) return qjobs::worker::cmd_logits(margs, tokens_file, out_file);
    if (*ppl) return qjobs::worker::cmd_ppl(margs, data_file, seqlen, num_samples, batch_size);
    if (*onnx) return qjobs::worker::cmd_onnx(env, margs.checkpoint, out_file, onnx_seq, onnx_ctx);
    if (*gguf) return qjobs::worker::cmd_gguf(env, margs.checkpoint, gguf_type, out_file, gguf_readback, gguf_name);
    if (*demo) return qjobs::worker::cmd_demo(margs, prompt, raw, max_new, temperature, top_p, seed);
    if (*train_tok) return qjobs::worker::cmd_train_tokenizer(tt_data, tt_vocab, tt_out);
    if (*train) return qjobs::worker::cmd_train(ta);
    if (*init) {
      try {
        qjobs::model::write_random_llama(rm_out, rm);
        std::cout << rm_out << "\n";
        return 0;
      } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
      }
    }
    return 2;
  };
  const int rc = dispatch();
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
